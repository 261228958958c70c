namespace Relay.Core.Messages;

/// <summary>
/// The MQTT 5 application properties of a publish (MQTT 5 §3.3.2.3) and the QoS an MQTT client published it at, carried
/// with the message through routing, history, the buses and retained stores to MQTT subscribers. A message without any
/// has none (null on <see cref="RelayMessage.Properties"/>), so other messages cost nothing. WebSocket, SSE and the other
/// protocols do not deliver them.
/// </summary>
public sealed class MessageProperties
{
    /// <summary>
    /// The QoS (0 or 1) an MQTT client published the message at: MQTT subscribers get it at no higher QoS (MQTT 5
    /// §3.8.4: the lower of this and their subscription's). Null: QoS 2 or not an MQTT publish (Relay stores and
    /// sequences every message, so those go out at each subscription's QoS).
    /// </summary>
    public byte? PublishedQos { get; init; }

    /// <summary>Whether any MQTT 5 application property is set (beside <see cref="PublishedQos"/>).</summary>
    public bool HasApplicationProperties =>
        PayloadFormatIndicator is not null || ExpiresAt != 0 || ContentType is not null || ResponseTopic is not null || CorrelationData is not null || UserProperties is not null;

    /// <summary>The QoS a subscription of <paramref name="subscriptionQos"/> delivers a message with these properties (null: none) at.</summary>
    public static byte DeliveryQos(MessageProperties? properties, byte subscriptionQos) =>
        properties?.PublishedQos is { } published && published < subscriptionQos ? published : subscriptionQos;

    /// <summary>The Payload Format Indicator (0 unspecified bytes, 1 UTF-8), if the publisher sent one.</summary>
    public byte? PayloadFormatIndicator { get; init; }

    /// <summary>
    /// When the message expires, in Unix milliseconds (the publish's arrival plus its Message Expiry Interval), or 0 for
    /// never. A message past it is not sent; one sent carries the time left as its interval (MQTT 5 §3.3.2.3.3).
    /// </summary>
    public long ExpiresAt { get; init; }

    /// <summary>The Content Type, if any.</summary>
    public string? ContentType { get; init; }

    /// <summary>The Response Topic, if any.</summary>
    public string? ResponseTopic { get; init; }

    /// <summary>The Correlation Data, if any.</summary>
    public byte[]? CorrelationData { get; init; }

    /// <summary>The User Properties in the publisher's order, duplicates kept, if any.</summary>
    public IReadOnlyList<KeyValuePair<string, string>>? UserProperties { get; init; }

    /// <summary>Whether the message has expired at <paramref name="nowMs"/> (Unix milliseconds).</summary>
    public bool IsExpiredAt(long nowMs) => ExpiresAt != 0 && nowMs >= ExpiresAt;
}
