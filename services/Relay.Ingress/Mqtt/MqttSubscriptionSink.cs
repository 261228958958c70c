using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// One MQTT subscription's way into its connection: the node's index holds one per topic filter, so each delivery knows
/// the QoS that filter was granted with (one object per subscription, nothing per delivery).
/// </summary>
internal sealed class MqttSubscriptionSink(MqttConnection connection, string filter, byte qos) : IMessageSink
{
    public string Filter { get; } = filter;

    public byte Qos { get; } = qos;

    /// <summary>The node's subscription, once it is started.</summary>
    public Subscription? Subscription { get; set; }

    public void Send(RelayMessage message) => connection.Deliver(message, Qos);

    /// <summary>
    /// MQTT has no way to tell a subscriber that messages were lost before this node, and no seq to resume from: the
    /// loss is logged by the node, and the subscription goes on (docs/mqtt.md).
    /// </summary>
    public void Lost(Subscription subscription)
    {
    }
}
