using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Pusher;

/// <summary>One Pusher channel subscription's way into its connection (one object per subscription, nothing per delivery).</summary>
internal sealed class PusherSubscriptionSink(PusherConnection connection, string pusherName, string relayName, PusherChannelKind kind) : IMessageSink
{
    public string PusherName { get; } = pusherName;

    public string RelayName { get; } = relayName;

    public PusherChannelKind Kind { get; } = kind;

    /// <summary>On a presence channel: the member this connection is (its own joins and leaves are not sent to it).</summary>
    public string? UserId { get; set; }

    /// <summary>The node's subscription, once it is started.</summary>
    public Subscription? Subscription { get; set; }

    /// <summary>Whether a message was delivered since the subscription started (a cache channel that got none answers <c>pusher:cache_miss</c>).</summary>
    public bool Delivered { get; set; }

    public void Send(RelayMessage message) => connection.Deliver(message, this);

    /// <summary>Pusher has no way to tell a subscriber that messages were lost, and nothing to resume from: the node logs the loss and the subscription goes on.</summary>
    public void Lost(Subscription subscription)
    {
    }
}
