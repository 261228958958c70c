using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// One MQTT subscription's way into its connection: the node's index holds one per topic filter, so each delivery knows
/// the QoS that filter was granted with (one object per subscription, nothing per delivery). It delivers to the session,
/// which outlives the connection when it is persistent.
/// </summary>
internal sealed class MqttSubscriptionSink(MqttSession session, string filter, byte qos) : IMessageSink
{
    public string Filter { get; } = filter;

    public byte Qos { get; } = qos;

    /// <summary>The node's subscription, once it is started.</summary>
    public Subscription? Subscription { get; set; }

    public void Send(RelayMessage message) => session.Deliver(message, Qos);

    /// <summary>
    /// Messages of the subscription's channel were lost before this node and history no longer holds them: at QoS 1 or 2
    /// the connection ends before the jump (docs/mqtt.md); at QoS 0, which promised at most once, delivery goes on.
    /// </summary>
    public void Lost(Subscription subscription) => session.Lost(this);
}
