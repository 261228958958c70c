namespace Relay.Core.Messages;

/// <summary>
/// A sequenced message: what routing produces and fan-out delivers. Immutable once sequenced, so one
/// instance (and its encoded frame, cached by the ingress) is shared by every subscriber.
/// </summary>
public sealed class RelayMessage
{
    /// <summary>The app (tenant).</summary>
    public required string App { get; init; }

    /// <summary>The channel name.</summary>
    public required string Channel { get; init; }

    /// <summary>The position in the channel, gapless from 1 within an epoch.</summary>
    public long Seq { get; init; }

    /// <summary>The channel's epoch: changes only when its history was lost.</summary>
    public required string Epoch { get; init; }

    /// <summary>The publisher's idempotency key, if any.</summary>
    public string? Id { get; init; }

    /// <summary>The event name, if any.</summary>
    public string? Name { get; init; }

    /// <summary>The payload: UTF-8 JSON when <see cref="DataIsJson"/>, raw bytes otherwise.</summary>
    public ReadOnlyMemory<byte> Data { get; init; }

    /// <summary>Whether <see cref="Data"/> is a JSON value (else it is delivered base64 with <c>"encoding":"base64"</c>).</summary>
    public bool DataIsJson { get; init; } = true;

    /// <summary>The publisher's client id, if any.</summary>
    public string? ClientId { get; init; }

    /// <summary>When routing sequenced it, in Unix milliseconds.</summary>
    public long Timestamp { get; init; }

    /// <summary>For a presence event: <c>enter</c>, <c>update</c> or <c>leave</c> (such an event has no seq and is not kept in history).</summary>
    public string? PresenceAction { get; init; }

    /// <summary>For a presence event: the member's connection.</summary>
    public string? ConnectionId { get; init; }

    /// <summary>W3C <c>traceparent</c> of the publish, carried across hops.</summary>
    public string? TraceParent { get; init; }

    /// <summary>The publish's MQTT 5 application properties, or null when it had none (most messages).</summary>
    public MessageProperties? Properties { get; init; }

    /// <summary>A slot for the delivering side to cache the encoded frame, so a message is encoded once for all its subscribers.</summary>
    public object? EncodedFrame { get; set; }

    /// <summary>The same for MQTT deliveries (their PUBLISH frames), so both protocols encode a message once each.</summary>
    public object? EncodedMqttFrame { get; set; }
}
