using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>A connection that messages are delivered to (WebSocket today; SSE and MQTT share the index).</summary>
internal interface IMessageSink
{
    /// <summary>Queues <paramref name="message"/> for sending; never blocks (a full queue cuts the connection).</summary>
    void Send(RelayMessage message);

    /// <summary>
    /// Queues a live delivery of one of this connection's subscriptions: a connection with overlapping subscriptions
    /// sends each message once (<see cref="RepeatFilter"/>). What a subscription reads back (recovery, rewind) goes
    /// through <see cref="Send"/>, as asked.
    /// </summary>
    void SendLive(RelayMessage message) => Send(message);

    /// <summary>The connection subscribed to a pattern (its live deliveries may overlap its other subscriptions').</summary>
    void PatternAdded()
    {
    }

    /// <summary>
    /// Messages of <paramref name="subscription"/>'s channel were lost before this node and cannot be read back: the
    /// connection makes its client recover (a <c>disconnect</c> with <c>reconnect: true</c>, after what is queued), so
    /// that it learns <c>recovered: false</c> when it subscribes again with <c>since</c>.
    /// </summary>
    void Lost(Subscription subscription);
}
