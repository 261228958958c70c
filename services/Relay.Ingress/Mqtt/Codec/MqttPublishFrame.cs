using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Relay.Core.Messages;

namespace Relay.Ingress.Mqtt.Codec;

/// <summary>
/// A delivered message's PUBLISH, encoded once per message for each of the four shapes a subscriber may need (MQTT 3.1.1
/// or 5, QoS 0 or 1) and kept on the message (<see cref="RelayMessage.EncodedMqttFrame"/>, beside the realtime frame's own
/// slot), so ten thousand MQTT subscribers cost one encoding. A QoS 1 frame is written with packet id 0; each
/// connection copies it and writes its own id at <see cref="PacketIdOffset"/>. An MQTT 5 frame carries the message's
/// application properties (<see cref="RelayMessage.Properties"/>) in it, encoded once too; what differs per delivery
/// (packet id, Subscription Identifiers, a topic alias in place of the topic, the expiry's time left) is written into
/// the copy.
/// </summary>
internal sealed class MqttPublishFrame
{
    private byte[]? _v4Qos0;
    private byte[]? _v4Qos1;
    private byte[]? _v5Qos0;
    private byte[]? _v5Qos1;

    private MqttPublishFrame(int topicBytes)
    {
        TopicBytes = topicBytes;
    }

    private int TopicBytes { get; }

    /// <summary>The frames of <paramref name="message"/>, made on its first MQTT delivery.</summary>
    public static MqttPublishFrame Of(RelayMessage message)
    {
        if (message.EncodedMqttFrame is MqttPublishFrame frames)
        {
            return frames;
        }

        // Two deliveries racing here each make one; either is right, the last one stays.
        frames = new MqttPublishFrame(Encoding.UTF8.GetByteCount(message.Channel));
        message.EncodedMqttFrame = frames;
        return frames;
    }

    /// <summary>The bytes of a PUBLISH of <paramref name="message"/> at QoS <paramref name="qos"/> (0 or 1; a QoS 2 delivery sets its header bits on a copy of the QoS 1 frame) for <paramref name="level"/>.</summary>
    public byte[] Get(RelayMessage message, byte level, byte qos)
    {
        ref var slot = ref level == 5 ? ref (qos == 0 ? ref _v5Qos0 : ref _v5Qos1) : ref (qos == 0 ? ref _v4Qos0 : ref _v4Qos1);
        return slot ??= Encode(message, level == 5, qos);
    }

    /// <summary>Where the packet id sits in <paramref name="frame"/>, a QoS 1 PUBLISH of this message (its topic sent or left empty for an alias): after the header, its length and the topic.</summary>
    public static int PacketIdOffset(ReadOnlySpan<byte> frame)
    {
        ReadVariableInt(frame[1..], out var lengthBytes);
        return TopicEnd(frame, lengthBytes);
    }

    /// <summary>
    /// The length of <paramref name="frame"/> (an MQTT 5 frame of this message) as this connection sends it: with
    /// <paramref name="identifiers"/> as its Subscription Identifier properties (MQTT 5 §3.3.2.3.8) and
    /// <paramref name="alias"/> as its Topic Alias (§3.3.2.3.4; 0: none), the topic left empty when
    /// <paramref name="topicOmitted"/> (the client knows the alias already). Written by <see cref="CopyFor"/>.
    /// </summary>
    public int LengthFor(byte[] frame, List<int>? identifiers, ushort alias, bool topicOmitted, bool packetId)
    {
        var remaining = Remaining(frame, identifiers, alias, topicOmitted, packetId, out _, out _);
        return 1 + MqttEncoder.VariableIntLength(remaining) + remaining;
    }

    /// <summary>
    /// Writes <paramref name="frame"/> into <paramref name="destination"/> with <paramref name="identifiers"/> and
    /// <paramref name="alias"/> added to its properties and its topic left out when <paramref name="topicOmitted"/>
    /// (written per delivery: only subscriptions with identifiers and connections with aliases pay for it).
    /// </summary>
    public void CopyFor(byte[] frame, List<int>? identifiers, ushort alias, bool topicOmitted, bool packetId, Span<byte> destination)
    {
        var remaining = Remaining(frame, identifiers, alias, topicOmitted, packetId, out var propertiesAt, out var propertiesLength);
        destination[0] = frame[0];
        var at = 1 + MqttEncoder.WriteVariableInt(destination[1..], remaining);
        var from = propertiesAt - (2 + TopicBytes + (packetId ? 2 : 0));
        if (topicOmitted)
        {
            // An empty topic (its two length bytes) in place of the frame's, then the packet id if any.
            destination[at++] = 0;
            destination[at++] = 0;
            from += 2 + TopicBytes;
        }

        frame.AsSpan(from, propertiesAt - from).CopyTo(destination[at..]);
        at += propertiesAt - from;
        at += MqttEncoder.WriteVariableInt(destination[at..], propertiesLength);

        // The message's own properties first (the expiry's place stays where WriteTimeLeft looks), then the alias and the
        // identifiers, then the payload.
        var own = ReadVariableInt(frame.AsSpan(propertiesAt), out var ownBytes);
        frame.AsSpan(propertiesAt + ownBytes, own).CopyTo(destination[at..]);
        at += own;
        if (alias != 0)
        {
            destination[at++] = MqttPropertyIds.TopicAlias;
            BinaryPrimitives.WriteUInt16BigEndian(destination[at..], alias);
            at += 2;
        }

        if (identifiers is not null)
        {
            foreach (var identifier in identifiers)
            {
                destination[at++] = MqttPropertyIds.SubscriptionIdentifier;
                at += MqttEncoder.WriteVariableInt(destination[at..], identifier);
            }
        }

        frame.AsSpan(propertiesAt + ownBytes + own).CopyTo(destination[at..]);
    }

    /// <summary>
    /// Writes <paramref name="seconds"/> as the Message Expiry Interval of <paramref name="packet"/>, an MQTT 5 PUBLISH of
    /// this message copied from its frame (MQTT 5 §3.3.2.3.3: the interval sent is the time left). The frame holds the
    /// property first after the Payload Format Indicator, with a placeholder of the same four bytes, so nothing moves.
    /// </summary>
    public static void WriteTimeLeft(Span<byte> packet, bool packetId, uint seconds)
    {
        ReadVariableInt(packet[1..], out var lengthBytes);
        var at = TopicEnd(packet, lengthBytes) + (packetId ? 2 : 0);
        ReadVariableInt(packet[at..], out var propertiesLengthBytes);
        at += propertiesLengthBytes;
        if (packet[at] == MqttPropertyIds.PayloadFormatIndicator)
        {
            at += 2;
        }

        if (packet[at] == MqttPropertyIds.MessageExpiryInterval)
        {
            BinaryPrimitives.WriteUInt32BigEndian(packet[(at + 1)..], seconds);
        }
    }

    // Where a PUBLISH's topic ends, read from the packet: the frame's own topic, or an empty one sent with an alias.
    private static int TopicEnd(ReadOnlySpan<byte> packet, int lengthBytes) =>
        1 + lengthBytes + 2 + BinaryPrimitives.ReadUInt16BigEndian(packet[(1 + lengthBytes)..]);

    private int Remaining(byte[] frame, List<int>? identifiers, ushort alias, bool topicOmitted, bool packetId, out int propertiesAt, out int propertiesLength)
    {
        ReadVariableInt(frame.AsSpan(1), out var lengthBytes);
        propertiesAt = 1 + lengthBytes + 2 + TopicBytes + (packetId ? 2 : 0);
        var own = ReadVariableInt(frame.AsSpan(propertiesAt), out var ownBytes);
        propertiesLength = own + (alias != 0 ? 3 : 0);
        if (identifiers is not null)
        {
            foreach (var identifier in identifiers)
            {
                propertiesLength += 1 + MqttEncoder.VariableIntLength(identifier);
            }
        }

        var payload = frame.Length - propertiesAt - ownBytes - own;
        return 2 + (topicOmitted ? 0 : TopicBytes) + (packetId ? 2 : 0) + MqttEncoder.VariableIntLength(propertiesLength) + propertiesLength + payload;
    }

    /// <summary>A well-formed Variable Byte Integer (one this class wrote), and how many bytes it took.</summary>
    internal static int ReadVariableInt(ReadOnlySpan<byte> span, out int bytes)
    {
        int value = 0, shift = 0;
        bytes = 0;
        byte next;
        do
        {
            next = span[bytes++];
            value |= (next & 0x7F) << shift;
            shift += 7;
        }
        while ((next & 0x80) != 0);
        return value;
    }

    private byte[] Encode(RelayMessage message, bool v5, byte qos)
    {
        // MQTT 3.1.1 has no properties: its subscribers get the payload alone.
        ReadOnlySpan<byte> properties = [0];
        if (v5 && message.Properties is { HasApplicationProperties: true } own)
        {
            var written = new ArrayBufferWriter<byte>(64);
            MqttEncoder.WriteProperties(written, MqttMessageProperties.ToPublish(own));
            properties = written.WrittenSpan;
        }

        var remaining = 2 + TopicBytes + (qos > 0 ? 2 : 0) + (v5 ? properties.Length : 0) + message.Data.Length;
        var lengthBytes = MqttEncoder.VariableIntLength(remaining);
        var frame = new byte[1 + lengthBytes + remaining];
        frame[0] = (byte)(((int)MqttPacketType.Publish << 4) | (qos << 1));
        var at = 1 + MqttEncoder.WriteVariableInt(frame.AsSpan(1), remaining);
        frame[at++] = (byte)(TopicBytes >> 8);
        frame[at++] = (byte)TopicBytes;
        at += Encoding.UTF8.GetBytes(message.Channel, frame.AsSpan(at));
        if (qos > 0)
        {
            at += 2;
        }

        if (v5)
        {
            properties.CopyTo(frame.AsSpan(at));
            at += properties.Length;
        }

        message.Data.Span.CopyTo(frame.AsSpan(at));
        return frame;
    }
}
