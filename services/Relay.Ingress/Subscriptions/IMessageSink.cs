using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>A connection that messages are delivered to (WebSocket today; SSE and MQTT share the index).</summary>
internal interface IMessageSink
{
    /// <summary>Queues <paramref name="message"/> for sending; never blocks (a full queue cuts the connection).</summary>
    void Send(RelayMessage message);
}
