using System.Buffers;
using System.Text;
using System.Text.Unicode;

namespace Relay.Ingress.Mqtt.Codec;

/// <summary>
/// Reads MQTT 3.1.1 and 5.0 control packets from a connection's input. <see cref="TryRead"/> has the parser shape of the
/// rest of the node: an incomplete packet is false (nothing consumed), a whole one is returned and sliced off, and input
/// that breaks the rules is an <see cref="MqttProtocolException"/> carrying the MQTT 5 reason code to answer with,
/// and never any other exception. A PUBLISH payload is a slice of the input, not a copy.
/// </summary>
internal static class MqttDecoder
{
    /// <summary>The largest remaining length four bytes can encode (§1.5.5, §2.2.3).</summary>
    public const int MaxRemainingLength = 268_435_455;

    /// <summary>
    /// Reads one packet from the start of <paramref name="buffer"/>. <paramref name="protocolLevel"/> is the connection's
    /// (4 or 5), or 0 before its CONNECT, when only a CONNECT is accepted. A packet larger than
    /// <paramref name="maxPacketBytes"/> (header included) is refused from its header, before its body arrives.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> buffer, byte protocolLevel, int maxPacketBytes, out MqttPacket? packet)
    {
        packet = null;
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryRead(out var first))
        {
            return false;
        }

        var type = (MqttPacketType)(first >> 4);
        if (protocolLevel == 0 && type != MqttPacketType.Connect)
        {
            throw MqttProtocolException.Protocol($"the first packet must be CONNECT, not {Name(type)}");
        }

        var remaining = 0;
        var lengthBytes = 0;
        while (true)
        {
            if (!reader.TryRead(out var b))
            {
                return false;
            }

            remaining |= (b & 0x7F) << (7 * lengthBytes);
            lengthBytes++;
            if ((b & 0x80) == 0)
            {
                if (b == 0 && lengthBytes > 1)
                {
                    throw MqttProtocolException.Malformed("the remaining length is not encoded in the fewest bytes");
                }

                break;
            }

            if (lengthBytes == 4)
            {
                throw MqttProtocolException.Malformed("the remaining length runs past four bytes");
            }
        }

        if ((long)1 + lengthBytes + remaining > maxPacketBytes)
        {
            throw new MqttProtocolException(MqttReasonCodes.PacketTooLarge, $"a {Name(type)} of {1 + lengthBytes + remaining} bytes is larger than this server's maximum packet size ({maxPacketBytes})");
        }

        if (reader.Remaining < remaining)
        {
            return false;
        }

        var body = buffer.Slice(reader.Position, remaining);
        packet = Decode(first, body, protocolLevel);
        buffer = buffer.Slice(body.End);
        return true;
    }

    /// <summary>
    /// Reads one acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) at the start of <paramref name="buffer"/> without making
    /// a packet object, the form a subscriber sends for every QoS 1 and 2 delivery: its packet id and, on MQTT 5, its
    /// reason code when it has one and no properties. False (nothing read) for anything else, including an ack with
    /// properties or one not whole in the buffer's first segment: <see cref="TryRead"/> reads those, and refuses a bad one.
    /// </summary>
    public static bool TryReadAck(ref ReadOnlySequence<byte> buffer, byte protocolLevel, out MqttPacketType type, out ushort packetId, out byte reasonCode)
    {
        type = default;
        packetId = 0;
        reasonCode = 0;
        var span = buffer.FirstSpan;
        if (protocolLevel == 0 || span.Length < 4 || span[0] is not (0x40 or 0x50 or 0x62 or 0x70))
        {
            return false;
        }

        // Remaining length 2: the id alone (reason 0). MQTT 5 also sends 3 (a reason code) and 4 (a reason code and an
        // empty property list).
        var remaining = span[1];
        if (remaining != 2 && (protocolLevel != 5 || remaining is not (3 or 4) || span.Length < 2 + remaining || (remaining == 4 && span[5] != 0)))
        {
            return false;
        }

        packetId = (ushort)((span[2] << 8) | span[3]);
        if (packetId == 0)
        {
            return false;
        }

        type = (MqttPacketType)(span[0] >> 4);
        reasonCode = remaining > 2 ? span[4] : (byte)0;
        buffer = buffer.Slice(2 + remaining);
        return true;
    }

    private static MqttPacket Decode(byte first, ReadOnlySequence<byte> body, byte level)
    {
        var type = (MqttPacketType)(first >> 4);
        var flags = first & 0x0F;
        var v5 = level == 5;
        var reader = new SequenceReader<byte>(body);
        switch (type)
        {
            case MqttPacketType.Publish:
                return ReadPublish(ref reader, flags, v5);
            case MqttPacketType.PubRel or MqttPacketType.Subscribe or MqttPacketType.Unsubscribe when flags != 0x02:
                throw MqttProtocolException.Malformed($"the flags of {Name(type)} must be 0010, not {Convert.ToString(flags, 2).PadLeft(4, '0')}");
            case not MqttPacketType.PubRel and not MqttPacketType.Subscribe and not MqttPacketType.Unsubscribe when flags != 0:
                throw MqttProtocolException.Malformed($"the flags of {Name(type)} must be 0000");
        }

        MqttPacket packet = type switch
        {
            MqttPacketType.Connect => ReadConnect(ref reader, level),
            MqttPacketType.ConnAck => ReadConnAck(ref reader, v5),
            MqttPacketType.PubAck or MqttPacketType.PubRec or MqttPacketType.PubRel or MqttPacketType.PubComp => ReadAck(ref reader, type, v5),
            MqttPacketType.Subscribe => ReadSubscribe(ref reader, v5),
            MqttPacketType.SubAck => ReadSubAck(ref reader, type, v5),
            MqttPacketType.Unsubscribe => ReadUnsubscribe(ref reader, v5),
            MqttPacketType.UnsubAck => ReadSubAck(ref reader, type, v5),
            MqttPacketType.PingReq => MqttPing.Request,
            MqttPacketType.PingResp => MqttPing.Response,
            MqttPacketType.Disconnect => ReadDisconnect(ref reader, type, v5),
            MqttPacketType.Auth when v5 => ReadDisconnect(ref reader, type, v5),
            _ => throw MqttProtocolException.Malformed($"packet type {(int)type} is reserved in MQTT {(v5 ? "5.0" : "3.1.1")}"),
        };

        if (reader.Remaining != 0)
        {
            throw MqttProtocolException.Malformed($"{Name(type)} has {reader.Remaining} bytes after its last field");
        }

        return packet;
    }

    private static MqttConnect ReadConnect(ref SequenceReader<byte> reader, byte level)
    {
        var connect = new MqttConnect { ProtocolName = ReadString(ref reader, "protocol name"), ProtocolLevel = ReadByte(ref reader) };
        if (level != 0)
        {
            throw MqttProtocolException.Protocol("a second CONNECT on one connection");
        }

        if (connect.ProtocolName == "MQIsdp" && connect.ProtocolLevel == 3)
        {
            throw new MqttProtocolException(MqttReasonCodes.UnsupportedProtocolVersion, "MQTT 3.1 (MQIsdp) is not supported: use MQTT 3.1.1 (level 4) or 5");
        }

        if (connect.ProtocolName != "MQTT")
        {
            throw MqttProtocolException.Malformed($"protocol name '{connect.ProtocolName}' is not MQTT");
        }

        if (connect.ProtocolLevel is not (4 or 5))
        {
            throw new MqttProtocolException(MqttReasonCodes.UnsupportedProtocolVersion, $"protocol level {connect.ProtocolLevel} is not supported: use 4 (MQTT 3.1.1) or 5");
        }

        var v5 = connect.ProtocolLevel == 5;
        var flags = ReadByte(ref reader);
        if ((flags & 0x01) != 0)
        {
            throw MqttProtocolException.Malformed("the reserved bit of CONNECT's flags must be 0");
        }

        connect.CleanSession = (flags & 0x02) != 0;
        connect.HasWill = (flags & 0x04) != 0;
        connect.WillQos = (byte)((flags >> 3) & 0x03);
        connect.WillRetain = (flags & 0x20) != 0;
        var hasPassword = (flags & 0x40) != 0;
        var hasUserName = (flags & 0x80) != 0;
        if (!connect.HasWill && (connect.WillQos != 0 || connect.WillRetain))
        {
            throw MqttProtocolException.Malformed("will QoS and will retain must be 0 without a will");
        }

        if (connect.WillQos == 3)
        {
            throw MqttProtocolException.Malformed("will QoS 3 does not exist");
        }

        if (!v5 && hasPassword && !hasUserName)
        {
            throw MqttProtocolException.Malformed("MQTT 3.1.1 allows a password only with a user name");
        }

        connect.KeepAliveSeconds = ReadUInt16(ref reader);
        if (v5)
        {
            connect.Properties = ReadProperties(ref reader, (int)MqttPacketType.Connect);
        }

        connect.ClientId = ReadString(ref reader, "client identifier");
        if (connect.HasWill)
        {
            if (v5)
            {
                connect.WillProperties = ReadProperties(ref reader, MqttPropertyIds.Will);
            }

            connect.WillTopic = ReadString(ref reader, "will topic");
            connect.WillPayload = ReadBinary(ref reader, "will payload");
        }

        if (hasUserName)
        {
            connect.UserName = ReadString(ref reader, "user name");
        }

        if (hasPassword)
        {
            connect.Password = ReadBinary(ref reader, "password");
        }

        return connect;
    }

    private static MqttConnAck ReadConnAck(ref SequenceReader<byte> reader, bool v5)
    {
        var flags = ReadByte(ref reader);
        if ((flags & 0xFE) != 0)
        {
            throw MqttProtocolException.Malformed("the reserved bits of CONNACK's flags must be 0");
        }

        var connAck = new MqttConnAck { SessionPresent = (flags & 0x01) != 0, ReasonCode = ReadByte(ref reader) };
        if (v5)
        {
            connAck.Properties = ReadProperties(ref reader, (int)MqttPacketType.ConnAck);
        }

        return connAck;
    }

    private static MqttPublish ReadPublish(ref SequenceReader<byte> reader, int flags, bool v5)
    {
        var publish = new MqttPublish { Retain = (flags & 0x01) != 0, Qos = (byte)((flags >> 1) & 0x03), Duplicate = (flags & 0x08) != 0 };
        if (publish.Qos == 3)
        {
            throw MqttProtocolException.Malformed("PUBLISH with QoS 3");
        }

        if (publish.Qos == 0 && publish.Duplicate)
        {
            throw MqttProtocolException.Malformed("a QoS 0 PUBLISH must not have DUP set");
        }

        publish.Topic = ReadString(ref reader, "topic name");
        if (publish.Topic.AsSpan().IndexOfAny('+', '#') >= 0)
        {
            throw MqttProtocolException.Protocol($"topic name '{publish.Topic}' contains a wildcard");
        }

        if (publish.Qos > 0)
        {
            publish.PacketId = ReadPacketId(ref reader, "PUBLISH");
        }

        if (v5)
        {
            publish.Properties = ReadProperties(ref reader, (int)MqttPacketType.Publish);
        }

        if (publish.Topic.Length == 0 && publish.Properties?.TopicAlias is null)
        {
            throw v5 ? MqttProtocolException.Protocol("an empty topic name needs a topic alias") : MqttProtocolException.Malformed("the topic name is empty");
        }

        publish.Payload = reader.UnreadSequence;
        reader.AdvanceToEnd();
        return publish;
    }

    private static MqttAck ReadAck(ref SequenceReader<byte> reader, MqttPacketType type, bool v5)
    {
        var ack = new MqttAck(type) { PacketId = ReadPacketId(ref reader, Name(type)) };
        if (v5 && reader.Remaining > 0)
        {
            ack.ReasonCode = ReadByte(ref reader);
            if (reader.Remaining > 0)
            {
                ack.Properties = ReadProperties(ref reader, (int)type);
            }
        }

        return ack;
    }

    private static MqttSubscribe ReadSubscribe(ref SequenceReader<byte> reader, bool v5)
    {
        var subscribe = new MqttSubscribe { PacketId = ReadPacketId(ref reader, "SUBSCRIBE") };
        if (v5)
        {
            subscribe.Properties = ReadProperties(ref reader, (int)MqttPacketType.Subscribe);
        }

        while (reader.Remaining > 0)
        {
            var filter = ReadString(ref reader, "topic filter");
            var options = ReadByte(ref reader);
            if ((options & (v5 ? 0xC0 : 0xFC)) != 0)
            {
                throw MqttProtocolException.Malformed($"the reserved bits of the subscription options of '{filter}' must be 0");
            }

            if ((options & 0x03) == 3)
            {
                throw MqttProtocolException.Malformed($"QoS 3 asked for '{filter}'");
            }

            if (((options >> 4) & 0x03) == 3)
            {
                throw MqttProtocolException.Protocol($"retain handling 3 asked for '{filter}'");
            }

            subscribe.Subscriptions.Add(new MqttSubscription(filter, options));
        }

        return subscribe.Subscriptions.Count > 0 ? subscribe : throw MqttProtocolException.Protocol("SUBSCRIBE without a topic filter");
    }

    private static MqttSubAck ReadSubAck(ref SequenceReader<byte> reader, MqttPacketType type, bool v5)
    {
        var ack = new MqttSubAck(type) { PacketId = ReadPacketId(ref reader, Name(type)) };
        if (v5)
        {
            ack.Properties = ReadProperties(ref reader, (int)type);
        }

        while (reader.Remaining > 0)
        {
            ack.ReasonCodes.Add(ReadByte(ref reader));
        }

        return ack;
    }

    private static MqttUnsubscribe ReadUnsubscribe(ref SequenceReader<byte> reader, bool v5)
    {
        var unsubscribe = new MqttUnsubscribe { PacketId = ReadPacketId(ref reader, "UNSUBSCRIBE") };
        if (v5)
        {
            unsubscribe.Properties = ReadProperties(ref reader, (int)MqttPacketType.Unsubscribe);
        }

        while (reader.Remaining > 0)
        {
            unsubscribe.Filters.Add(ReadString(ref reader, "topic filter"));
        }

        return unsubscribe.Filters.Count > 0 ? unsubscribe : throw MqttProtocolException.Protocol("UNSUBSCRIBE without a topic filter");
    }

    private static MqttDisconnect ReadDisconnect(ref SequenceReader<byte> reader, MqttPacketType type, bool v5)
    {
        var packet = new MqttDisconnect(type);
        if (v5 && reader.Remaining > 0)
        {
            packet.ReasonCode = ReadByte(ref reader);
            if (reader.Remaining > 0)
            {
                packet.Properties = ReadProperties(ref reader, (int)type);
            }
        }

        return packet;
    }

    private static MqttProperties? ReadProperties(ref SequenceReader<byte> reader, int packet)
    {
        var length = ReadVariableInt(ref reader);
        if (length == 0)
        {
            return null;
        }

        if (reader.Remaining < length)
        {
            throw MqttProtocolException.Malformed($"the properties' length ({length}) runs past the packet");
        }

        var end = reader.Consumed + length;
        var properties = new MqttProperties();
        var seen = 0UL;
        while (reader.Consumed < end)
        {
            var number = ReadVariableInt(ref reader);
            if (number > byte.MaxValue || !MqttPropertyIds.IsKnown((byte)number))
            {
                throw MqttProtocolException.Malformed($"unknown property 0x{number:X2}");
            }

            var id = (byte)number;
            if (!MqttPropertyIds.AllowedIn(id, packet))
            {
                throw MqttProtocolException.Protocol($"property 0x{id:X2} is not allowed in {(packet == MqttPropertyIds.Will ? "a will" : Name((MqttPacketType)packet))}");
            }

            var repeatable = id == MqttPropertyIds.UserProperty || (id == MqttPropertyIds.SubscriptionIdentifier && packet == (int)MqttPacketType.Publish);
            if (!repeatable && (seen & (1UL << id)) != 0)
            {
                throw MqttProtocolException.Protocol($"property 0x{id:X2} appears twice");
            }

            seen |= 1UL << id;
            ReadProperty(ref reader, id, properties);
        }

        return reader.Consumed == end ? properties : throw MqttProtocolException.Malformed("a property runs past the properties' length");
    }

    private static void ReadProperty(ref SequenceReader<byte> reader, byte id, MqttProperties properties)
    {
        switch (id)
        {
            case MqttPropertyIds.PayloadFormatIndicator:
                properties.PayloadFormatIndicator = ReadFlag(ref reader, id);
                break;
            case MqttPropertyIds.MessageExpiryInterval:
                properties.MessageExpiryInterval = ReadUInt32(ref reader);
                break;
            case MqttPropertyIds.ContentType:
                properties.ContentType = ReadString(ref reader, "content type");
                break;
            case MqttPropertyIds.ResponseTopic:
                properties.ResponseTopic = ReadString(ref reader, "response topic");
                break;
            case MqttPropertyIds.CorrelationData:
                properties.CorrelationData = ReadBinary(ref reader, "correlation data");
                break;
            case MqttPropertyIds.SubscriptionIdentifier:
                var subscriptionId = ReadVariableInt(ref reader);
                (properties.SubscriptionIdentifiers ??= []).Add(subscriptionId != 0 ? subscriptionId : throw MqttProtocolException.Protocol("subscription identifier 0"));
                break;
            case MqttPropertyIds.SessionExpiryInterval:
                properties.SessionExpiryInterval = ReadUInt32(ref reader);
                break;
            case MqttPropertyIds.AssignedClientIdentifier:
                properties.AssignedClientIdentifier = ReadString(ref reader, "assigned client identifier");
                break;
            case MqttPropertyIds.ServerKeepAlive:
                properties.ServerKeepAlive = ReadUInt16(ref reader);
                break;
            case MqttPropertyIds.AuthenticationMethod:
                properties.AuthenticationMethod = ReadString(ref reader, "authentication method");
                break;
            case MqttPropertyIds.AuthenticationData:
                properties.AuthenticationData = ReadBinary(ref reader, "authentication data");
                break;
            case MqttPropertyIds.RequestProblemInformation:
                properties.RequestProblemInformation = ReadFlag(ref reader, id);
                break;
            case MqttPropertyIds.WillDelayInterval:
                properties.WillDelayInterval = ReadUInt32(ref reader);
                break;
            case MqttPropertyIds.RequestResponseInformation:
                properties.RequestResponseInformation = ReadFlag(ref reader, id);
                break;
            case MqttPropertyIds.ResponseInformation:
                properties.ResponseInformation = ReadString(ref reader, "response information");
                break;
            case MqttPropertyIds.ServerReference:
                properties.ServerReference = ReadString(ref reader, "server reference");
                break;
            case MqttPropertyIds.ReasonString:
                properties.ReasonString = ReadString(ref reader, "reason string");
                break;
            case MqttPropertyIds.ReceiveMaximum:
                properties.ReceiveMaximum = ReadNonZeroUInt16(ref reader, "receive maximum");
                break;
            case MqttPropertyIds.TopicAliasMaximum:
                properties.TopicAliasMaximum = ReadUInt16(ref reader);
                break;
            case MqttPropertyIds.TopicAlias:
                // MQTT 5 §3.3.2.3.4: alias 0 is not permitted, DISCONNECT 0x94 (Topic Alias invalid).
                properties.TopicAlias = ReadUInt16(ref reader) is not 0 and var alias ? alias : throw new MqttProtocolException(MqttReasonCodes.TopicAliasInvalid, "topic alias 0");
                break;
            case MqttPropertyIds.MaximumQos:
                properties.MaximumQos = ReadFlag(ref reader, id);
                break;
            case MqttPropertyIds.RetainAvailable:
                properties.RetainAvailable = ReadFlag(ref reader, id);
                break;
            case MqttPropertyIds.UserProperty:
                var name = ReadString(ref reader, "user property name");
                (properties.UserProperties ??= []).Add(new KeyValuePair<string, string>(name, ReadString(ref reader, "user property value")));
                break;
            case MqttPropertyIds.MaximumPacketSize:
                var size = ReadUInt32(ref reader);
                properties.MaximumPacketSize = size != 0 ? size : throw MqttProtocolException.Protocol("maximum packet size 0");
                break;
            case MqttPropertyIds.WildcardSubscriptionAvailable:
                properties.WildcardSubscriptionAvailable = ReadFlag(ref reader, id);
                break;
            case MqttPropertyIds.SubscriptionIdentifierAvailable:
                properties.SubscriptionIdentifierAvailable = ReadFlag(ref reader, id);
                break;
            case MqttPropertyIds.SharedSubscriptionAvailable:
                properties.SharedSubscriptionAvailable = ReadFlag(ref reader, id);
                break;
        }
    }

    private static byte ReadByte(ref SequenceReader<byte> reader) =>
        reader.TryRead(out var value) ? value : throw MqttProtocolException.Malformed("the packet ends inside a field");

    private static byte ReadFlag(ref SequenceReader<byte> reader, byte id)
    {
        var value = ReadByte(ref reader);
        return value <= 1 ? value : throw MqttProtocolException.Protocol($"property 0x{id:X2} must be 0 or 1, not {value}");
    }

    private static ushort ReadUInt16(ref SequenceReader<byte> reader) =>
        reader.TryReadBigEndian(out short value) ? (ushort)value : throw MqttProtocolException.Malformed("the packet ends inside a two-byte integer");

    private static ushort ReadNonZeroUInt16(ref SequenceReader<byte> reader, string what)
    {
        var value = ReadUInt16(ref reader);
        return value != 0 ? value : throw MqttProtocolException.Protocol($"{what} 0");
    }

    private static ushort ReadPacketId(ref SequenceReader<byte> reader, string packet)
    {
        var value = ReadUInt16(ref reader);
        return value != 0 ? value : throw MqttProtocolException.Malformed($"{packet} with packet identifier 0");
    }

    private static uint ReadUInt32(ref SequenceReader<byte> reader) =>
        reader.TryReadBigEndian(out int value) ? (uint)value : throw MqttProtocolException.Malformed("the packet ends inside a four-byte integer");

    /// <summary>A variable byte integer (§1.5.5): at most four bytes, in the fewest bytes.</summary>
    private static int ReadVariableInt(ref SequenceReader<byte> reader)
    {
        var value = 0;
        for (var i = 0; i < 4; i++)
        {
            var b = ReadByte(ref reader);
            value |= (b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
            {
                return b == 0 && i > 0 ? throw MqttProtocolException.Malformed("a variable byte integer is not in the fewest bytes") : value;
            }
        }

        throw MqttProtocolException.Malformed("a variable byte integer runs past four bytes");
    }

    /// <summary>A UTF-8 string (§1.5.4): well-formed UTF-8 without U+0000, else the packet is malformed.</summary>
    private static string ReadString(ref SequenceReader<byte> reader, string what)
    {
        var length = ReadUInt16(ref reader);
        if (reader.Remaining < length)
        {
            throw MqttProtocolException.Malformed($"the {what} runs past the packet");
        }

        if (length == 0)
        {
            return string.Empty;
        }

        ReadOnlySpan<byte> bytes = reader.UnreadSpan.Length >= length ? reader.UnreadSpan[..length] : reader.UnreadSequence.Slice(0, length).ToArray();
        reader.Advance(length);
        if (!Utf8.IsValid(bytes))
        {
            throw MqttProtocolException.Malformed($"the {what} is not valid UTF-8");
        }

        if (bytes.Contains((byte)0))
        {
            throw MqttProtocolException.Malformed($"the {what} contains U+0000");
        }

        return Encoding.UTF8.GetString(bytes);
    }

    private static byte[] ReadBinary(ref SequenceReader<byte> reader, string what)
    {
        var length = ReadUInt16(ref reader);
        if (reader.Remaining < length)
        {
            throw MqttProtocolException.Malformed($"the {what} runs past the packet");
        }

        var bytes = reader.UnreadSequence.Slice(0, length).ToArray();
        reader.Advance(length);
        return bytes;
    }

    private static string Name(MqttPacketType type) => type switch
    {
        MqttPacketType.Connect => "CONNECT",
        MqttPacketType.ConnAck => "CONNACK",
        MqttPacketType.Publish => "PUBLISH",
        MqttPacketType.PubAck => "PUBACK",
        MqttPacketType.PubRec => "PUBREC",
        MqttPacketType.PubRel => "PUBREL",
        MqttPacketType.PubComp => "PUBCOMP",
        MqttPacketType.Subscribe => "SUBSCRIBE",
        MqttPacketType.SubAck => "SUBACK",
        MqttPacketType.Unsubscribe => "UNSUBSCRIBE",
        MqttPacketType.UnsubAck => "UNSUBACK",
        MqttPacketType.PingReq => "PINGREQ",
        MqttPacketType.PingResp => "PINGRESP",
        MqttPacketType.Disconnect => "DISCONNECT",
        MqttPacketType.Auth => "AUTH",
        _ => $"packet type {(int)type}",
    };
}
