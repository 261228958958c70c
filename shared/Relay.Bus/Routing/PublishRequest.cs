using Relay.Core.Messages;

namespace Relay.Bus.Routing;

/// <summary>Sequence, store and deliver these messages, in order.</summary>
public sealed record PublishRequest(string App, string Channel, IReadOnlyList<PublishItem> Items, string? ClientId, string? TraceParent)
    : RoutingRequest(App, Channel)
{
    /// <summary>How long a message id is remembered for deduplication: the window the protocol promises (2 minutes).</summary>
    public static readonly TimeSpan IdempotencyWindow = TimeSpan.FromMinutes(2);

    /// <summary>
    /// Who sent it and its number among the sender's changes of the channel's shard, where the bus numbers them (the Redis
    /// bus); null elsewhere. The channel authority stores a sender's number at most once: an attempt the sender gave up on
    /// and sent again is not stored a second time when the first one turns up late at another owner.
    /// </summary>
    public PublishOrigin? Origin { get; init; }
}

/// <summary>A publish's sender (the caller's reply channel on the bus) and its number among the sender's changes of one shard (from 1, in the order sent).</summary>
public sealed record PublishOrigin(string Sender, long Number)
{
    /// <summary>
    /// The sender's lowest number on the shard still waiting for an answer when this attempt was sent (0: not known): a
    /// store may forget what it kept to answer a repeat of any number below it.
    /// </summary>
    public long Floor { get; init; }
}
