using System.Collections.Concurrent;
using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>
/// For a bus that may lose deliveries (Redis pub/sub is at most once): follows each channel's seq at this node, and when
/// one jumps, holds the channel's later messages, reads the missing ones from history, and dispatches them in order
/// before the held ones. Duplicates (a batch sent twice after a failed PUBLISH) are dropped here. A channel's calls come
/// in seq order from the bus; the repair finishes on another thread, so each channel's cursor is its own lock.
/// What history no longer holds (or could not be read) is counted and reported through <c>lost</c> (app, channel,
/// epoch, last lost seq) before the first message after it goes out, so subscribers are told instead of seeing a jump.
/// </summary>
internal sealed class GapRepair(
    Action<RelayMessage> dispatch,
    Func<string, string, long, int, Task<(string Epoch, IReadOnlyList<RelayMessage> Messages)?>> readAfter,
    Action<string, string, string, long> lost)
{
    /// <summary>The most messages one history read asks for; a longer gap is read in several pages.</summary>
    public const int RepairPage = 1000;

    private readonly ConcurrentDictionary<(string App, string Channel), Cursor> _cursors = new();
    private long _repaired;
    private long _unrepaired;

    /// <summary>Messages read back from history into a gap.</summary>
    public long Repaired => Interlocked.Read(ref _repaired);

    /// <summary>Messages of gaps that history no longer held (or could not be read).</summary>
    public long Unrepaired => Interlocked.Read(ref _unrepaired);

    /// <summary>Dispatches <paramref name="message"/>, or holds it while the gap before it is read back.</summary>
    public void Deliver(RelayMessage message)
    {
        if (message.PresenceAction is not null || message.Seq <= 0)
        {
            dispatch(message);
            return;
        }

        var cursor = _cursors.GetOrAdd((message.App, message.Channel), static _ => new Cursor());
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
    /// followed channel's position (each one <paramref name="only"/> accepts, when given) and reads back what this node has not seen.
    /// </summary>
    public async Task ResyncAsync(Func<string, string, Task<(string Epoch, long Seq)?>> positionOf, Func<string, string, bool>? only = null)
    {
        foreach (var ((app, channel), cursor) in _cursors)
        {
            if (only is not null && !only(app, channel))
            {
                continue;
            }

            (string Epoch, long Seq)? position;
            try
            {
                position = await positionOf(app, channel).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                continue;
            }

            lock (cursor)
            {
                if (position is { } at && cursor.Held is null && cursor.Epoch is not null && at.Seq > (cursor.Epoch == at.Epoch ? cursor.Seq : 0))
                {
                    // Behind in this epoch, or a new epoch (history was lost) this node has seen nothing of.
                    cursor.Held = [];
                    _ = RepairAsync(cursor, app, channel, at.Epoch, cursor.Epoch == at.Epoch ? cursor.Seq : 0, at.Seq + 1);
                }
            }
        }
    }

    /// <summary>A subscription learned the channel's position: a channel not followed yet starts there.</summary>
    public void Start(string app, string channel, string epoch, long seq) =>
        _cursors.TryAdd((app, channel), new Cursor { Epoch = epoch, Seq = seq, Used = Environment.TickCount64 });

    /// <summary>Forgets channels unused for <paramref name="idle"/> that <paramref name="keep"/> does not want kept.</summary>
    public void Sweep(TimeSpan idle, Func<string, string, bool> keep)
    {
        var oldest = Environment.TickCount64 - (long)idle.TotalMilliseconds;
        foreach (var ((app, channel), cursor) in _cursors)
        {
            lock (cursor)
            {
                if (cursor.Held is null && cursor.Used < oldest && !keep(app, channel))
                {
                    _cursors.TryRemove(new KeyValuePair<(string, string), Cursor>((app, channel), cursor));
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

        cursor.Epoch = message.Epoch;
        cursor.Seq = message.Seq;
        dispatch(message);
    }

    private async Task RepairAsync(Cursor cursor, string app, string channel, string? epoch, long after, long upTo)
    {
        while (true)
        {
            (string Epoch, IReadOnlyList<RelayMessage> Messages)? read = null;
            var limit = (int)Math.Min(RepairPage, upTo - after - 1);
            try
            {
                read = await readAfter(app, channel, after, limit).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Nothing read: what is missing counts as lost below; the held messages still go out, in order.
            }

            lock (cursor)
            {
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

                var held = cursor.Held!;
                cursor.Held = null;
                foreach (var message in held)
                {
                    ReportLoss(cursor, app, channel, message);
                    Advance(cursor, message);
                }

                return;
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
            lost(app, channel, message.Epoch, message.Seq - 1);
        }
    }

    private sealed class Cursor
    {
        public string? Epoch;
        public long Seq;
        public long Used;
        public List<RelayMessage>? Held;
    }
}
