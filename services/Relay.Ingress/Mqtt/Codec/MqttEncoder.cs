using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Relay.Ingress.Mqtt.Codec;

/// <summary>
/// Writes MQTT 3.1.1 and 5.0 control packets. Control packets are rare (one per request), so each is put together in a
/// scratch buffer and copied once behind its fixed header; a delivered message's PUBLISH is encoded once per message and
/// version (<see cref="MqttPublishFrame"/>) and its bytes copied to every subscriber.
/// </summary>
internal static class MqttEncoder
{
    /// <summary>Encodes <paramref name="packet"/> for a connection at <paramref name="level"/> (4 or 5).</summary>
    public static byte[] Encode(MqttPacket packet, byte level)
    {
        ArgumentNullException.ThrowIfNull(packet);
        var body = new ArrayBufferWriter<byte>(64);
        var v5 = level == 5;
        byte flags = 0;
        switch (packet)
        {
            case MqttConnect connect:
                WriteConnect(body, connect);
                break;
            case MqttConnAck connAck:
                body.Write<byte>([connAck.SessionPresent ? (byte)1 : (byte)0, connAck.ReasonCode]);
                if (v5)
                {
                    WriteProperties(body, connAck.Properties);
                }

                break;
            case MqttPublish publish:
                flags = (byte)((publish.Duplicate ? 0x08 : 0) | (publish.Qos << 1) | (publish.Retain ? 1 : 0));
                WriteString(body, publish.Topic);
                if (publish.Qos > 0)
                {
                    WriteUInt16(body, publish.PacketId);
                }

                if (v5)
                {
                    WriteProperties(body, publish.Properties);
                }

                foreach (var segment in publish.Payload)
                {
                    body.Write(segment.Span);
                }

                break;
            case MqttAck ack:
                flags = ack.Type == MqttPacketType.PubRel ? (byte)0x02 : (byte)0;
                WriteUInt16(body, ack.PacketId);
                if (v5 && (ack.ReasonCode != 0 || ack.Properties is not null))
                {
                    body.Write<byte>([ack.ReasonCode]);
                    if (ack.Properties is not null)
                    {
                        WriteProperties(body, ack.Properties);
                    }
                }

                break;
            case MqttSubscribe subscribe:
                flags = 0x02;
                WriteUInt16(body, subscribe.PacketId);
                if (v5)
                {
                    WriteProperties(body, subscribe.Properties);
                }

                foreach (var subscription in subscribe.Subscriptions)
                {
                    WriteString(body, subscription.Filter);
                    body.Write<byte>([subscription.Options]);
                }

                break;
            case MqttSubAck subAck:
                WriteUInt16(body, subAck.PacketId);
                if (v5)
                {
                    WriteProperties(body, subAck.Properties);
                }

                if (v5 || subAck.Type == MqttPacketType.SubAck)
                {
                    foreach (var code in subAck.ReasonCodes)
                    {
                        body.Write<byte>([code]);
                    }
                }

                break;
            case MqttUnsubscribe unsubscribe:
                flags = 0x02;
                WriteUInt16(body, unsubscribe.PacketId);
                if (v5)
                {
                    WriteProperties(body, unsubscribe.Properties);
                }

                foreach (var filter in unsubscribe.Filters)
                {
                    WriteString(body, filter);
                }

                break;
            case MqttDisconnect disconnect:
                if (v5 && (disconnect.ReasonCode != 0 || disconnect.Properties is not null))
                {
                    body.Write<byte>([disconnect.ReasonCode]);
                    if (disconnect.Properties is not null)
                    {
                        WriteProperties(body, disconnect.Properties);
                    }
                }

                break;
            case MqttPing:
                break;
            default:
                throw new ArgumentException($"cannot encode {packet.GetType().Name}", nameof(packet));
        }

        var length = VariableIntLength(body.WrittenCount);
        var frame = new byte[1 + length + body.WrittenCount];
        frame[0] = (byte)(((int)packet.Type << 4) | flags);
        WriteVariableInt(frame.AsSpan(1), body.WrittenCount);
        body.WrittenSpan.CopyTo(frame.AsSpan(1 + length));
        return frame;
    }

    /// <summary>
    /// Writes a PUBACK, PUBREC, PUBREL or PUBCOMP without properties straight into <paramref name="output"/> (what
    /// <see cref="Encode"/> writes for such an <see cref="MqttAck"/>, without its object and arrays): the reason code
    /// goes on MQTT 5 when it is not 0 (§3.4.2.1: left out for Success with no properties), never on 3.1.1. Returns the
    /// bytes written.
    /// </summary>
    public static int WriteAck(IBufferWriter<byte> output, MqttPacketType type, ushort packetId, byte reasonCode, bool v5)
    {
        var withReason = v5 && reasonCode != 0;
        var length = withReason ? 5 : 4;
        var span = output.GetSpan(length);
        span[0] = (byte)(((int)type << 4) | (type == MqttPacketType.PubRel ? 0x02 : 0));
        span[1] = (byte)(length - 2);
        BinaryPrimitives.WriteUInt16BigEndian(span[2..], packetId);
        if (withReason)
        {
            span[4] = reasonCode;
        }

        output.Advance(length);
        return length;
    }

    /// <summary>How many bytes a variable byte integer of <paramref name="value"/> takes.</summary>
    public static int VariableIntLength(int value) => value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4;

    /// <summary>Writes <paramref name="value"/> as a variable byte integer; returns the bytes written.</summary>
    public static int WriteVariableInt(Span<byte> destination, int value)
    {
        var i = 0;
        do
        {
            var b = (byte)(value & 0x7F);
            value >>= 7;
            destination[i++] = value > 0 ? (byte)(b | 0x80) : b;
        }
        while (value > 0);
        return i;
    }

    private static void WriteConnect(ArrayBufferWriter<byte> body, MqttConnect connect)
    {
        var v5 = connect.ProtocolLevel == 5;
        WriteString(body, connect.ProtocolName);
        var flags = (connect.CleanSession ? 0x02 : 0) | (connect.HasWill ? 0x04 | (connect.WillQos << 3) | (connect.WillRetain ? 0x20 : 0) : 0)
            | (connect.Password is not null ? 0x40 : 0) | (connect.UserName is not null ? 0x80 : 0);
        body.Write<byte>([connect.ProtocolLevel, (byte)flags]);
        WriteUInt16(body, connect.KeepAliveSeconds);
        if (v5)
        {
            WriteProperties(body, connect.Properties);
        }

        WriteString(body, connect.ClientId);
        if (connect.HasWill)
        {
            if (v5)
            {
                WriteProperties(body, connect.WillProperties);
            }

            WriteString(body, connect.WillTopic ?? string.Empty);
            WriteBinary(body, connect.WillPayload ?? []);
        }

        if (connect.UserName is not null)
        {
            WriteString(body, connect.UserName);
        }

        if (connect.Password is not null)
        {
            WriteBinary(body, connect.Password);
        }
    }

    /// <summary>Writes MQTT 5 properties with their length in front (0 when there are none).</summary>
    public static void WriteProperties(IBufferWriter<byte> output, MqttProperties? properties)
    {
        if (properties is null)
        {
            output.Write<byte>([0]);
            return;
        }

        var scratch = new ArrayBufferWriter<byte>(32);
        Byte(scratch, MqttPropertyIds.PayloadFormatIndicator, properties.PayloadFormatIndicator);
        UInt32(scratch, MqttPropertyIds.MessageExpiryInterval, properties.MessageExpiryInterval);
        Text(scratch, MqttPropertyIds.ContentType, properties.ContentType);
        Text(scratch, MqttPropertyIds.ResponseTopic, properties.ResponseTopic);
        Binary(scratch, MqttPropertyIds.CorrelationData, properties.CorrelationData);
        foreach (var id in properties.SubscriptionIdentifiers ?? [])
        {
            scratch.Write<byte>([MqttPropertyIds.SubscriptionIdentifier]);
            var span = scratch.GetSpan(4);
            scratch.Advance(WriteVariableInt(span, id));
        }

        UInt32(scratch, MqttPropertyIds.SessionExpiryInterval, properties.SessionExpiryInterval);
        Text(scratch, MqttPropertyIds.AssignedClientIdentifier, properties.AssignedClientIdentifier);
        UInt16(scratch, MqttPropertyIds.ServerKeepAlive, properties.ServerKeepAlive);
        Text(scratch, MqttPropertyIds.AuthenticationMethod, properties.AuthenticationMethod);
        Binary(scratch, MqttPropertyIds.AuthenticationData, properties.AuthenticationData);
        Byte(scratch, MqttPropertyIds.RequestProblemInformation, properties.RequestProblemInformation);
        UInt32(scratch, MqttPropertyIds.WillDelayInterval, properties.WillDelayInterval);
        Byte(scratch, MqttPropertyIds.RequestResponseInformation, properties.RequestResponseInformation);
        Text(scratch, MqttPropertyIds.ResponseInformation, properties.ResponseInformation);
        Text(scratch, MqttPropertyIds.ServerReference, properties.ServerReference);
        Text(scratch, MqttPropertyIds.ReasonString, properties.ReasonString);
        UInt16(scratch, MqttPropertyIds.ReceiveMaximum, properties.ReceiveMaximum);
        UInt16(scratch, MqttPropertyIds.TopicAliasMaximum, properties.TopicAliasMaximum);
        UInt16(scratch, MqttPropertyIds.TopicAlias, properties.TopicAlias);
        Byte(scratch, MqttPropertyIds.MaximumQos, properties.MaximumQos);
        Byte(scratch, MqttPropertyIds.RetainAvailable, properties.RetainAvailable);
        foreach (var (name, value) in properties.UserProperties ?? [])
        {
            scratch.Write<byte>([MqttPropertyIds.UserProperty]);
            WriteString(scratch, name);
            WriteString(scratch, value);
        }

        UInt32(scratch, MqttPropertyIds.MaximumPacketSize, properties.MaximumPacketSize);
        Byte(scratch, MqttPropertyIds.WildcardSubscriptionAvailable, properties.WildcardSubscriptionAvailable);
        Byte(scratch, MqttPropertyIds.SubscriptionIdentifierAvailable, properties.SubscriptionIdentifierAvailable);
        Byte(scratch, MqttPropertyIds.SharedSubscriptionAvailable, properties.SharedSubscriptionAvailable);

        var lengthSpan = output.GetSpan(4);
        output.Advance(WriteVariableInt(lengthSpan, scratch.WrittenCount));
        output.Write(scratch.WrittenSpan);

        static void Byte(ArrayBufferWriter<byte> w, byte id, byte? value)
        {
            if (value is { } v)
            {
                w.Write<byte>([id, v]);
            }
        }

        static void UInt16(ArrayBufferWriter<byte> w, byte id, ushort? value)
        {
            if (value is { } v)
            {
                w.Write<byte>([id]);
                WriteUInt16(w, v);
            }
        }

        static void UInt32(ArrayBufferWriter<byte> w, byte id, uint? value)
        {
            if (value is { } v)
            {
                w.Write<byte>([id]);
                BinaryPrimitives.WriteUInt32BigEndian(w.GetSpan(4), v);
                w.Advance(4);
            }
        }

        static void Text(ArrayBufferWriter<byte> w, byte id, string? value)
        {
            if (value is not null)
            {
                w.Write<byte>([id]);
                WriteString(w, value);
            }
        }

        static void Binary(ArrayBufferWriter<byte> w, byte id, byte[]? value)
        {
            if (value is not null)
            {
                w.Write<byte>([id]);
                WriteBinary(w, value);
            }
        }
    }

    public static void WriteUInt16(IBufferWriter<byte> output, ushort value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(output.GetSpan(2), value);
        output.Advance(2);
    }

    public static void WriteString(IBufferWriter<byte> output, string value)
    {
        var length = Encoding.UTF8.GetByteCount(value);
        if (length > ushort.MaxValue)
        {
            throw new ArgumentException($"a string of {length} UTF-8 bytes does not fit MQTT's 65,535", nameof(value));
        }

        WriteUInt16(output, (ushort)length);
        output.Advance(Encoding.UTF8.GetBytes(value, output.GetSpan(length)));
    }

    private static void WriteBinary(IBufferWriter<byte> output, byte[] value)
    {
        WriteUInt16(output, (ushort)value.Length);
        output.Write(value);
    }
}
