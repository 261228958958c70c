using Relay.Core.Messages;
using Relay.Ingress.Mqtt.Codec;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// The MQTT 5 application properties of a PUBLISH or will (MQTT 5 §3.3.2.3) as a message carries them
/// (<see cref="MessageProperties"/>), and back. The Message Expiry Interval becomes an instant, so the time left can be
/// told wherever and whenever the message is sent.
/// </summary>
internal static class MqttMessageProperties
{
    // A QoS 0 or 1 publish without application properties: one shared, immutable instance each, nothing allocated.
    private static readonly MessageProperties AtQosZero = new() { PublishedQos = 0 };
    private static readonly MessageProperties AtQosOne = new() { PublishedQos = 1 };

    /// <summary>
    /// The message's properties from a decoded packet's and its QoS, or null when it has none of them and came at QoS 2
    /// (a QoS 0 or 1 one without application properties shares one instance per QoS).
    /// </summary>
    public static MessageProperties? From(MqttProperties? properties, long nowMs, byte qos)
    {
        byte? published = qos < 2 ? qos : null;
        if (properties is null
            || properties is { PayloadFormatIndicator: null, MessageExpiryInterval: null, ContentType: null, ResponseTopic: null, CorrelationData: null, UserProperties: null })
        {
            return published switch { 0 => AtQosZero, 1 => AtQosOne, _ => null };
        }

        return new MessageProperties
        {
            PublishedQos = published,
            PayloadFormatIndicator = properties.PayloadFormatIndicator,
            ExpiresAt = properties.MessageExpiryInterval is { } seconds ? nowMs + (seconds * 1000L) : 0,
            ContentType = properties.ContentType,
            ResponseTopic = properties.ResponseTopic,
            CorrelationData = properties.CorrelationData,
            UserProperties = properties.UserProperties,
        };
    }

    /// <summary>
    /// The PUBLISH properties of <paramref name="properties"/>, for the frame encoded once per message: the expiry is a
    /// placeholder each delivery overwrites with the time left (<see cref="MqttPublishFrame.WriteTimeLeft"/>).
    /// </summary>
    public static MqttProperties ToPublish(MessageProperties properties) => new()
    {
        PayloadFormatIndicator = properties.PayloadFormatIndicator,
        MessageExpiryInterval = properties.ExpiresAt != 0 ? 0u : null,
        ContentType = properties.ContentType,
        ResponseTopic = properties.ResponseTopic,
        CorrelationData = properties.CorrelationData,
        UserProperties = properties.UserProperties is null ? null : properties.UserProperties as List<KeyValuePair<string, string>> ?? [.. properties.UserProperties],
    };

    /// <summary>The Message Expiry Interval to send at <paramref name="nowMs"/>: the seconds left, rounded up (at least 1).</summary>
    public static uint SecondsLeft(MessageProperties properties, long nowMs) =>
        (uint)Math.Max(1, (properties.ExpiresAt - nowMs + 999) / 1000);
}
