using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>A connection that messages are delivered to (WebSocket today; SSE and MQTT share the index).</summary>
internal interface IMessageSink
{
    /// <summary>Queues <paramref name="message"/> for sending; never blocks (a full queue cuts the connection).</summary>
    void Send(RelayMessage message);

    /// <summary>
    /// Messages of <paramref name="subscription"/>'s channel were lost before this node and cannot be read back: the
    /// connection makes its client recover (a <c>disconnect</c> with <c>reconnect: true</c>, after what is queued), so
    /// that it learns <c>recovered: false</c> when it subscribes again with <c>since</c>.
    /// </summary>
    void Lost(Subscription subscription);
}
