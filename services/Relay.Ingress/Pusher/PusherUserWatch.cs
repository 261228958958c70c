using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Pusher;

/// <summary>
/// A signed-in connection's own subscription to its user's Relay channel (<c>server-to-user-{id}</c>), whatever the
/// client subscribed to: <c>terminate_connections</c> publishes <see cref="PusherBroker.TerminateEvent"/> there, so it
/// reaches the user's connections on every node through fan-out like any message.
/// </summary>
internal sealed class PusherUserWatch(PusherConnection connection, string user) : IMessageSink
{
    public string User { get; } = user;

    public Subscription? Subscription { get; set; }

    public void Send(RelayMessage message)
    {
        if (message.PresenceAction is null && message.Name == PusherBroker.TerminateEvent)
        {
            connection.Terminate();
        }
    }

    /// <summary>A lost message may have been a terminate: nothing to read back (the user channel keeps no order the watch needs), the watch goes on.</summary>
    public void Lost(Subscription subscription)
    {
    }
}
