using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// One MQTT subscription's way into its connection: the node's index holds one per topic filter, so each delivery knows
/// the QoS and MQTT 5 options that filter was granted with (one object per subscription, nothing per delivery). It
/// delivers to the session, which outlives the connection when it is persistent.
/// </summary>
internal sealed class MqttSubscriptionSink(MqttSession session, string filter, byte qos) : IMessageSink
{
    public MqttSession Session { get; } = session;

    /// <summary>The filter as subscribed (<c>$share/group/filter</c> for a shared one).</summary>
    public string Filter { get; } = filter;

    /// <summary>The topic filter matched against channels: <see cref="Filter"/> without a shared subscription's <c>$share/group/</c>.</summary>
    public string TopicFilter { get; init; } = filter;

    public byte Qos { get; } = qos;

    /// <summary>MQTT 5 No Local: the publisher's own messages (its Relay client id) are not sent back on this subscription.</summary>
    public string? NoLocalClientId { get; init; }

    /// <summary>MQTT 5 Retain As Published: a live delivery keeps the RETAIN flag its publish had (else it is cleared).</summary>
    public bool RetainAsPublished { get; init; }

    /// <summary>MQTT 5 Subscription Identifier (0: none), sent on each delivery this subscription matches.</summary>
    public int Identifier { get; init; }

    /// <summary>The SUBSCRIBE options byte this subscription was granted with (QoS, No Local, Retain As Published), as the session store keeps it.</summary>
    public byte Options => (byte)(Qos | (NoLocalClientId is null ? 0 : 0x04) | (RetainAsPublished ? 0x08 : 0));

    /// <summary>The shared subscription's group this member has joined (null: not shared, or not joined yet).</summary>
    public MqttShareGroup? JoinedShare { get; set; }

    /// <summary>The node's subscription, once it is started (a shared member has none: its group holds it).</summary>
    public Subscription? Subscription { get; set; }

    /// <summary>Whether <paramref name="message"/> is the subscriber's own and this subscription asked not to get those back.</summary>
    public bool IsOwn(RelayMessage message) => NoLocalClientId is { } self && string.Equals(message.ClientId, self, StringComparison.Ordinal);

    public void Send(RelayMessage message)
    {
        if (IsOwn(message))
        {
            return;
        }

        Session.Deliver(message, Qos, RetainAsPublished && Session.Broker.PublishedRetained(message));
    }

    /// <summary>
    /// Messages of the subscription's channel were lost before this node and history no longer holds them: at QoS 1 or 2
    /// the connection ends before the jump (docs/mqtt.md); at QoS 0, which promised at most once, delivery goes on.
    /// </summary>
    public void Lost(Subscription subscription) => Session.Lost(this);
}
