using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Bus.Routing;

/// <summary>A routing shard's answer.</summary>
public abstract record RoutingReply;

/// <summary>The seqs given to a publish's messages, in order (a repeated idempotency key gets its first seq).</summary>
public sealed record PublishReply(long[] Seqs, string Epoch) : RoutingReply;

/// <summary>History, oldest first, with the channel's position at the time of reading.</summary>
/// <param name="Position">The epoch and latest seq.</param>
/// <param name="Messages">The messages, oldest first.</param>
/// <param name="Complete">For a read with <c>AfterSeq</c>: whether every message after it was still held.</param>
/// <param name="Truncated">
/// For a backward read with <see cref="HistoryRequest.MaxBytes"/>: older messages within the limit were left out to keep
/// the page within its bytes; the caller asks for them with <c>before</c> = the first message's seq.
/// </param>
public sealed record HistoryReply(ChannelPosition Position, IReadOnlyList<RelayMessage> Messages, bool Complete, bool Truncated = false) : RoutingReply;

/// <summary>A channel's position.</summary>
public sealed record PositionReply(ChannelPosition Position) : RoutingReply;

/// <summary>The request failed with a protocol error.</summary>
public sealed record ErrorReply(RelayError Error) : RoutingReply
{
    /// <summary>The refusal of a presence enter past the channel's <paramref name="max"/> members, whichever authority holds the channel.</summary>
    public static ErrorReply PresenceFull(int max, string channel) =>
        new(new RelayError(ErrorCodes.RateLimited, $"channel '{channel}' has its maximum of {max} presence members; leave first or raise MaxPresenceMembers for its namespace"));
}

/// <summary>A channel's present members (presence records: clientId, connectionId, data).</summary>
public sealed record PresenceReply(IReadOnlyList<RelayMessage> Members) : RoutingReply;

/// <summary>
/// This routing instance no longer owns the request's shard (its lease moved on): the answer comes from the owner. A
/// networked bus tells the caller only that this instance declined (Redis: <c>declined:&lt;correlation&gt;</c> on its reply
/// channel), so a caller whose every receiver declined sends the request again. Never reaches a caller as a reply.
/// </summary>
public sealed record NotOwnerReply : RoutingReply
{
    /// <summary>The one instance.</summary>
    public static NotOwnerReply Instance { get; } = new();
}

/// <summary>
/// The request was handled before: an attempt its sender gave up on and sent again reached an owner after the first one
/// was stored (<see cref="PublishRequest.Origin"/>). The first handling answers the sender; nothing more is sent. Never
/// reaches a caller as a reply.
/// </summary>
public sealed record HandledBeforeReply : RoutingReply
{
    /// <summary>The one instance.</summary>
    public static HandledBeforeReply Instance { get; } = new();
}
