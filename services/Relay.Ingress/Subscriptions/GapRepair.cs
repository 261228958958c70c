using System.Collections.Concurrent;
using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>
/// For a bus that may lose deliveries (Redis pub/sub is at most once): follows each channel's seq at this node, and when
/// one jumps, holds the channel's later messages, reads the missing ones from history, and dispatches them in order
/// before the held ones. Duplicates (a batch sent twice after a failed PUBLISH) are dropped here. A channel's calls come
/// in seq order from the bus; the repair finishes on another thread, so each channel's cursor is its own lock.
/// What history no longer holds (or could not be read) is counted and reported through <c>lost</c> (app, channel,
/// epoch, last lost seq, presence) before the first message after it goes out, so subscribers are told instead of seeing a jump.
/// Presence events numbered by the engine (their own sequence per channel, in <see cref="RelayMessage.Seq"/>) are
/// followed the same way on a cursor of their own, read back from the channel's kept presence events; events with no
/// number (an engine that does not keep them) go straight out. A lost last message shows no jump: a resync notice
/// (<see cref="ResyncAsync"/>) or, failing that, the quiet check (<see cref="CheckQuietAsync"/>) asks the channel's
/// position and reads it back.
/// </summary>
internal sealed class GapRepair(
    Action<RelayMessage> dispatch,
    Func<string, string, bool, long, int, Task<(string Epoch, IReadOnlyList<RelayMessage> Messages)?>> readAfter,
    Action<string, string, string, long, bool> lost)
{
    /// <summary>The most messages one history read asks for; a longer gap is read in several pages.</summary>
    public const int RepairPage = 1000;

    /// <summary>The most position requests a resync or quiet check has in flight at once.</summary>
    public const int ChecksInFlight = 16;

    // A read that failed is tried again after these pauses (a routing shard between owners answers within a lease
    // time; Redis failing over, within seconds) before what it should have read counts as lost.
    private static readonly TimeSpan[] s_readRetries = [TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(2), TimeSpan.Zero];

    private readonly ConcurrentDictionary<(string App, string Channel, bool Presence), Cursor> _cursors = new();
    private long _repaired;
    private long _unrepaired;

    /// <summary>Messages (and presence events) read back into a gap.</summary>
    public long Repaired => Interlocked.Read(ref _repaired);

    /// <summary>Messages (and presence events) of gaps that the engine no longer held (or could not be read).</summary>
    public long Unrepaired => Interlocked.Read(ref _unrepaired);

    /// <summary>Dispatches <paramref name="message"/>, or holds it while the gap before it is read back.</summary>
    public void Deliver(RelayMessage message)
    {
        if (message.Seq <= 0)
        {
            dispatch(message);
            return;
        }

        var presence = message.PresenceAction is not null;

        // A cursor made here, before any subscription's position reached it (the first subscriber of a busy channel on
        // this node), starts at this message: Start then judges the seqs before it against that position.
        var cursor = _cursors.GetOrAdd((message.App, message.Channel, presence), static key => new Cursor(key.Presence) { FirstEpoch = "" });
        lock (cursor)
        {
            cursor.Used = Environment.TickCount64;
            if (cursor.Held is not null)
            {
                cursor.Held.Add(message);
                return;
            }

            if (cursor.Epoch == message.Epoch && message.Seq > cursor.Seq + 1)
            {
                cursor.Held = [message];
                _ = RepairAsync(cursor, message.App, message.Channel, cursor.Epoch, cursor.Seq, message.Seq);
                return;
            }

            if (cursor.Epoch is not null && cursor.Epoch != message.Epoch && message.Seq > 1)
            {
                // A new epoch (history was lost) whose first messages never came: read them from its start.
                cursor.Held = [message];
                _ = RepairAsync(cursor, message.App, message.Channel, message.Epoch, 0, message.Seq);
                return;
            }

            Advance(cursor, message);
        }
    }

    /// <summary>
    /// Deliveries may have been lost with no later message to show it: asks <paramref name="positionOf"/> for each
    /// followed channel's position (each one <paramref name="only"/> accepts, when given) and reads back what this node
    /// has not seen, of its messages and of its presence events (<see cref="ChannelPosition.PresenceSeq"/>). A channel
    /// whose position could not be read is asked again by the next <see cref="CheckQuietAsync"/>.
    /// </summary>
    public async Task ResyncAsync(Func<string, string, Task<ChannelPosition?>> positionOf, Func<string, string, bool>? only = null)
    {
        var channels = new HashSet<(string App, string Channel)>();
        foreach (var key in _cursors.Keys)
        {
            if (only is null || only(key.App, key.Channel))
            {
                channels.Add((key.App, key.Channel));
            }
        }

        await CheckAllAsync(channels, positionOf).ConfigureAwait(false);
    }

    /// <summary>
    /// The safety net for a lost tail that nothing announced: each channel that has been quiet here for
    /// <paramref name="quiet"/> since its last message or presence event is checked once (its position asked, what this
    /// node has not seen read back), as is each channel whose position a resync could not read. Called periodically;
    /// returns how many channels it checked. <paramref name="behind"/> hears of each cursor found behind its channel's
    /// position (app, channel, presence, the seq this node had, the position's): a delivery lost that nothing announced.
    /// </summary>
    public async Task<int> CheckQuietAsync(Func<string, string, Task<ChannelPosition?>> positionOf, TimeSpan quiet, Action<string, string, bool, long, long>? behind = null)
    {
        var now = Environment.TickCount64;
        var quietMs = (long)quiet.TotalMilliseconds;
        var channels = new HashSet<(string App, string Channel)>();
        foreach (var (key, cursor) in _cursors)
        {
            lock (cursor)
            {
                if (cursor.Held is null && (cursor.Unsure || (!cursor.Checked && now - cursor.Used >= quietMs)))
                {
                    cursor.Checked = true;
                    cursor.Unsure = false;
                    channels.Add((key.App, key.Channel));
                }
            }
        }

        await CheckAllAsync(channels, positionOf, behind).ConfigureAwait(false);
        return channels.Count;
    }

    // Asks each channel's position (a few at a time) and catches its cursors up to it; one that cannot be read is
    // marked to be asked again.
    private async Task CheckAllAsync(HashSet<(string App, string Channel)> channels, Func<string, string, Task<ChannelPosition?>> positionOf, Action<string, string, bool, long, long>? behind = null)
    {
        if (channels.Count == 0)
        {
            return;
        }

        var options = new ParallelOptions { MaxDegreeOfParallelism = ChecksInFlight };
        await Parallel.ForEachAsync(channels, options, async (entry, _) =>
        {
            var (app, channel) = entry;
            ChannelPosition? position;
            try
            {
                position = await positionOf(app, channel).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                position = null;
            }

            foreach (var presence in (ReadOnlySpan<bool>)[false, true])
            {
                if (!_cursors.TryGetValue((app, channel, presence), out var cursor))
                {
                    continue;
                }

                if (position is { } at)
                {
                    var seq = presence ? at.PresenceSeq : at.Seq;
                    if (CatchUp(cursor, app, channel, at.Epoch, seq) is { } had)
                    {
                        behind?.Invoke(app, channel, presence, had, seq);
                    }
                }
                else
                {
                    lock (cursor)
                    {
                        cursor.Unsure = true;
                    }
                }
            }
        }).ConfigureAwait(false);
    }

    // Reads back what a cursor has not seen up to `seq` of `epoch` (behind in this epoch, or a new epoch, after history
    // was lost, that this node has seen nothing of).
    // A repair already under way reads only up to the gap it saw: the position is kept for it to catch up to when it
    // is done (a resync during a shard handover, while earlier gaps are read back, would otherwise lose the tail).
    // Returns the seq the cursor had when it was behind (a read started, or kept for the repair under way), else null.
    private long? CatchUp(Cursor cursor, string app, string channel, string epoch, long seq)
    {
        lock (cursor)
        {
            if (cursor.Held is not null)
            {
                cursor.CatchUpTo = cursor.CatchUpTo is { } pending && pending.Epoch == epoch ? (epoch, Math.Max(pending.Seq, seq)) : (epoch, seq);
                return cursor.Seq;
            }

            if (cursor.Epoch is not null && seq > (cursor.Epoch == epoch ? cursor.Seq : 0))
            {
                var had = cursor.Seq;
                cursor.Held = [];
                _ = RepairAsync(cursor, app, channel, epoch, cursor.Epoch == epoch ? cursor.Seq : 0, seq + 1);
                return had;
            }

            return null;
        }
    }

    /// <summary>
    /// A subscription learned the channel's position: a channel not followed yet starts there, its messages at
    /// <see cref="ChannelPosition.Seq"/> and its presence events at <see cref="ChannelPosition.PresenceSeq"/>.
    /// </summary>
    /// <returns>
    /// The first seq this node saw of the channel when that came before the position and after a gap (the deliveries
    /// between the position and it never reached this node, and the cursor, which started at it, will never read them
    /// back): the subscription reads them from history itself. Null otherwise.
    /// </returns>
    public long? Start(string app, string channel, ChannelPosition position)
    {
        var used = Environment.TickCount64;
        _cursors.TryAdd((app, channel, true), new Cursor(presence: true) { Epoch = position.Epoch, Seq = position.PresenceSeq, Used = used, Checked = true });
        var messages = _cursors.GetOrAdd((app, channel, false), static (_, start) => new Cursor(presence: false) { Epoch = start.Position.Epoch, Seq = start.Position.Seq, Used = start.Used, Checked = true }, (Position: position, Used: used));
        lock (messages)
        {
            return messages.FirstEpoch == position.Epoch && messages.FirstSeq > position.Seq + 1 ? messages.FirstSeq : null;
        }
    }

    /// <summary>Forgets channels unused for <paramref name="idle"/> that <paramref name="keep"/> does not want kept.</summary>
    public void Sweep(TimeSpan idle, Func<string, string, bool> keep)
    {
        var oldest = Environment.TickCount64 - (long)idle.TotalMilliseconds;
        foreach (var (key, cursor) in _cursors)
        {
            lock (cursor)
            {
                if (cursor.Held is null && cursor.Used < oldest && !keep(key.App, key.Channel))
                {
                    _cursors.TryRemove(new KeyValuePair<(string, string, bool), Cursor>(key, cursor));
                }
            }
        }
    }

    // Under the cursor's lock: dispatches a message that follows (or starts a new epoch), drops one already passed.
    private void Advance(Cursor cursor, RelayMessage message)
    {
        if (cursor.Epoch == message.Epoch && message.Seq <= cursor.Seq)
        {
            return;
        }

        if (cursor.FirstEpoch == "")
        {
            cursor.FirstEpoch = message.Epoch;
            cursor.FirstSeq = message.Seq;
        }

        cursor.Epoch = message.Epoch;
        cursor.Seq = message.Seq;
        cursor.Checked = false;
        dispatch(message);
    }

    private async Task RepairAsync(Cursor cursor, string app, string channel, string? epoch, long after, long upTo)
    {
        while (true)
        {
            (string Epoch, IReadOnlyList<RelayMessage> Messages)? read = null;
            var limit = (int)Math.Min(RepairPage, upTo - after - 1);
            for (var attempt = 0; read is null && attempt < s_readRetries.Length; attempt++)
            {
                try
                {
                    read = await readAfter(app, channel, cursor.Presence, after, limit).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // Routing between owners, Redis away for a moment: tried again shortly.
                }

                if (read is null && s_readRetries[attempt] > TimeSpan.Zero)
                {
                    await Task.Delay(s_readRetries[attempt]).ConfigureAwait(false);
                }
            }

            // Still nothing read: what is missing counts as lost below; the held messages still go out, in order.

            lock (cursor)
            {
                // The next quiet check asks the position again, so a tail this repair could not read is read then.
                cursor.Unsure |= read is null;
                if (read is { } history && history.Epoch == epoch)
                {
                    foreach (var message in history.Messages)
                    {
                        if (message.Seq < upTo)
                        {
                            // History starts past the gap's start when it was trimmed meanwhile.
                            ReportLoss(cursor, app, channel, message);
                            Interlocked.Increment(ref _repaired);
                            Advance(cursor, message);
                        }
                    }

                    // A full page that did not reach the held messages: read on from where it ended.
                    if (history.Messages.Count == limit && cursor.Epoch == epoch && cursor.Seq > after && cursor.Seq < upTo - 1)
                    {
                        after = cursor.Seq;
                        continue;
                    }
                }

                // The held messages go out in order. One past a gap this read did not cover (another delivery lost, or
                // late, while this one was read) is held with those after it, and its gap read back too; only a gap a
                // read already covered counts as lost. Each read covers more, so this ends.
                var held = cursor.Held!;
                cursor.Held = null;
                for (var i = 0; i < held.Count; i++)
                {
                    var message = held[i];
                    if (message.Epoch == epoch && cursor.Epoch == epoch && message.Seq > upTo && message.Seq > cursor.Seq + 1)
                    {
                        cursor.Held = held.GetRange(i, held.Count - i);
                        after = cursor.Seq;
                        upTo = message.Seq;
                        break;
                    }

                    ReportLoss(cursor, app, channel, message);
                    Advance(cursor, message);
                }

                if (cursor.Held is null && cursor.CatchUpTo is { } target)
                {
                    // A resync came while this repair ran: read on to the position it found.
                    cursor.CatchUpTo = null;
                    if (cursor.Epoch is not null && target.Seq > (cursor.Epoch == target.Epoch ? cursor.Seq : 0))
                    {
                        cursor.Held = [];
                        epoch = target.Epoch;
                        after = cursor.Epoch == target.Epoch ? cursor.Seq : 0;
                        upTo = target.Seq + 1;
                        continue;
                    }
                }

                if (cursor.Held is null)
                {
                    // A tail no read reached (Redis away longer than the retries) is not lost: history still holds it,
                    // and the cursor stays where it was, so the next delivery's jump, the resync that follows Redis's
                    // return or the next quiet check reads it back. Telling subscribers it was lost would cut them off
                    // for nothing.
                    return;
                }
            }
        }
    }

    // Under the cursor's lock, before `message` goes out: when it would jump over seqs of the cursor's epoch, they are
    // lost to this node (history no longer holds them): count them and tell the channel's subscribers first.
    private void ReportLoss(Cursor cursor, string app, string channel, RelayMessage message)
    {
        if (cursor.Epoch == message.Epoch && message.Seq > cursor.Seq + 1)
        {
            Interlocked.Add(ref _unrepaired, message.Seq - cursor.Seq - 1);
            lost(app, channel, message.Epoch, message.Seq - 1, cursor.Presence);
        }
    }

    private sealed class Cursor(bool presence)
    {
        // Follows the channel's presence events (their own numbers) rather than its messages.
        public readonly bool Presence = presence;

        public string? Epoch;
        public long Seq;
        public long Used;
        public List<RelayMessage>? Held;

        // A position a resync found while a repair was under way (under the lock): read on to it once that is done.
        public (string Epoch, long Seq)? CatchUpTo;

        // The channel's position was asked since this cursor last moved (a quiet check need not ask again).
        public bool Checked;

        // A resync or check could not read the channel's position: the next quiet check asks again.
        public bool Unsure;

        // For a cursor a delivery made (not a subscription's position): the epoch and seq of the first message it
        // passed ("" until then); null for one a position made.
        public string? FirstEpoch;
        public long FirstSeq;
    }
}
