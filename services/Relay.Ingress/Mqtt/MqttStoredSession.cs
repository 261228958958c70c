using System.Text.Json;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// A persistent session as another ingress node resumes it (the bytes in the bus's session store, JSON): its
/// subscriptions (shared ones too, joined again live), and per channel the position after which it has not been given
/// everything (the last seq it was given, or the one before the oldest it had not acknowledged), so the next node recovers from history
/// what came after; and the packet ids of QoS 2 deliveries awaiting PUBCOMP (the client has them: the next node sends
/// PUBREL again, MQTT 5 §4.4), null for none; and the packet ids of the client's QoS 2 publishes answered PUBREC and awaiting
/// PUBREL (a resend of one is not published again, MQTT §4.3.3), null for none; and the deliveries sent and not
/// acknowledged (awaiting PUBACK or PUBREC) with their packet ids, which the next node sends again from history with
/// those ids and DUP (MQTT §4.4), null for none; a node older than a field ignores it (docs/mqtt.md, "Sessions across nodes").
/// </summary>
internal sealed record MqttStoredSession(uint Expiry, IReadOnlyList<MqttStoredSession.Subscription> Subscriptions, IReadOnlyList<MqttStoredSession.Position> Positions, IReadOnlyList<ushort>? Releases = null, IReadOnlyList<ushort>? AwaitingRelease = null, IReadOnlyList<MqttStoredSession.Resend>? Resends = null)
{
    /// <summary>A delivery sent with <paramref name="PacketId"/> and not acknowledged: the message at <paramref name="Seq"/> of the channel's epoch.</summary>
    internal sealed record Resend(string Channel, string Epoch, long Seq, ushort PacketId);

    /// <summary>A filter as subscribed, its SUBSCRIBE options byte (QoS, No Local, Retain As Published) and MQTT 5 Subscription Identifier.</summary>
    internal sealed record Subscription(string Filter, byte Options, int Identifier);

    /// <summary>A channel's epoch and the seq after which the session is to be given its messages.</summary>
    internal sealed record Position(string Channel, string Epoch, long Seq);

    /// <summary>The state's bytes for the store.</summary>
    public byte[] Encode() => JsonSerializer.SerializeToUtf8Bytes(this, MqttStoredSessionJson.Default.MqttStoredSession);

    /// <summary>The state in <paramref name="bytes"/>, or null for none (empty) or bytes this version cannot read.</summary>
    public static MqttStoredSession? Decode(ReadOnlyMemory<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize(bytes.Span, MqttStoredSessionJson.Default.MqttStoredSession);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
