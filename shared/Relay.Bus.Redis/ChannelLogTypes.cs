namespace Relay.Bus.Redis;

/// <summary>What an append did: the message's seq in <paramref name="Epoch"/>, or the first seq of an id seen within the window.</summary>
/// <param name="Seq">The seq given to the message (for a duplicate: the seq the id got the first time).</param>
/// <param name="Epoch">The channel's epoch the seq belongs to.</param>
/// <param name="Duplicate">True when the id was seen within the dedupe window, or the origin stored that number and item
/// already (its record still held), and nothing was appended.</param>
/// <param name="HandledBefore">True when the origin stored a later number (or item) on this channel already and no record
/// of this one is held (below the origin's floor, or older than ten minutes): nothing was appended, and the seq is not
/// known here (0).</param>
public readonly record struct ChannelAppendResult(long Seq, string Epoch, bool Duplicate, bool HandledBefore = false);

/// <summary>A channel's epoch and its last seq (0 when nothing was appended in this epoch).</summary>
public readonly record struct ChannelLogPosition(string Epoch, long Seq)
{
    /// <summary>The number of the channel's last presence event in the epoch (<see cref="RedisPresence"/>).</summary>
    public long PresenceSeq { get; init; }
}

/// <summary>One message of a channel's history.</summary>
/// <param name="Seq">Its seq in the epoch of the read that returned it.</param>
/// <param name="Timestamp">Unix ms (Redis server clock) when it was appended.</param>
/// <param name="Payload">The bytes given to the append.</param>
public sealed record ChannelLogMessage(long Seq, long Timestamp, ReadOnlyMemory<byte> Payload);

/// <summary>A read of a channel's history.</summary>
/// <param name="Epoch">The channel's epoch; a reader that knew another epoch must start over (its seqs mean nothing here).</param>
/// <param name="Seq">The channel's last seq when it was read.</param>
/// <param name="Messages">The messages, in seq order, without gaps.</param>
/// <param name="Complete">
/// For <see cref="RedisChannelLog.ReadAfterAsync"/>: false when the history no longer reaches the seq right after the one asked
/// for (trimmed by size or age, or lost), so messages were missed. For <see cref="RedisChannelLog.ReadLastAsync"/>: always true.
/// </param>
/// <param name="Truncated">
/// For a backward read with a byte budget: older messages within the limit were left out to keep within it.
/// </param>
public sealed record ChannelReadResult(string Epoch, long Seq, IReadOnlyList<ChannelLogMessage> Messages, bool Complete, bool Truncated = false)
{
    /// <summary>The number of the channel's last presence event in the epoch when it was read (<see cref="RedisPresence"/>).</summary>
    public long PresenceSeq { get; init; }
}

/// <summary>A read of a channel's kept presence events (<see cref="RedisPresence.ReadAfterAsync"/>).</summary>
/// <param name="Epoch">The channel's epoch ('' when the channel has none yet).</param>
/// <param name="PresenceSeq">The number of the channel's last presence event in that epoch.</param>
/// <param name="Events">The events, oldest first, each with its number as <see cref="Relay.Core.Messages.RelayMessage.Seq"/>.</param>
/// <param name="Complete">False when the kept events no longer reach the one right after the number asked for.</param>
public sealed record PresenceReadResult(string Epoch, long PresenceSeq, IReadOnlyList<Relay.Core.Messages.RelayMessage> Events, bool Complete);
