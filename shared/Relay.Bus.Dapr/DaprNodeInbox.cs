using Relay.Core.Messages;

namespace Relay.Bus.Dapr;

/// <summary>
/// One ingress node's deliveries, put back in seq order per channel: Dapr pub/sub redelivers and reorders, and a node
/// that sees a seq past a gap reads the gap from history at once, which at a few thousand messages a second may have
/// been trimmed already though the messages are only late. A message past a gap is held until the gap fills or for
/// <see cref="DaprBusOptions.ReorderHold"/>, then everything held goes to the node in order (its gap repair takes
/// over). Seqs at or before the last released pass straight through: the node drops what it has. Where a channel starts
/// here is learned from the positions this process's routing requests are answered with (<see cref="Known"/>: a node
/// asks its channel's position when a subscription starts); a channel's first messages before that (or with no such
/// answer: after start-up, or an hour without any) wait out the hold and go in order, unless the first is seq 1.
/// Presence events and messages without a seq are not held.
/// </summary>
internal sealed class DaprNodeInbox
{
    // Messages one channel may hold waiting for a gap: past it they all go to the node (and its gap repair).
    private const int MaxHeldPerChannel = 10_000;

    // A channel with nothing held and no message for this long is forgotten (its next message starts it again, held
    // unless it is seq 1): long, so only a channel quiet for an hour pays the hold on its next message.
    private static readonly TimeSpan IdleChannel = TimeSpan.FromHours(1);

    // Last of a channel whose position is not known yet: everything is held until the hold runs out.
    private const long Unknown = long.MinValue;

    private readonly Dictionary<(string App, string Channel), ChannelOrder> _channels = [];
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly long _holdTicks;
    private readonly Action<ValueTask> _observe;

    public DaprNodeInbox(INodeHandler node, TimeSpan hold, TimeProvider time, Action<ValueTask> observe)
    {
        Node = node;
        _time = time;
        _holdTicks = (long)(hold.TotalSeconds * time.TimestampFrequency);
        _observe = observe;
    }

    public INodeHandler Node { get; }

    /// <summary>Messages the node got only once the hold ran out (their gap never filled in time).</summary>
    public long ReleasedByTimeout { get; private set; }

    public void Deliver(RelayMessage message)
    {
        if (_holdTicks == 0 || message.Seq <= 0 || message.PresenceAction is not null)
        {
            _observe(Node.OnDeliverAsync(message));
            return;
        }

        // Handed to the node under the gate, so two deliveries of one channel arriving at once keep their order.
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            var key = (message.App, message.Channel);
            if (!_channels.TryGetValue(key, out var state) || state.Epoch != message.Epoch)
            {
                // The first of this channel here (or of a new epoch): where the node stands is not known, and the
                // first to arrive may have overtaken earlier ones, so all wait out the hold and go in order; seq 1
                // has nothing before it.
                if (state is not null)
                {
                    ReleaseAll(state);
                }

                _channels[key] = state = new ChannelOrder(message.Epoch, message.Seq == 1 ? 0 : Unknown);
            }

            state.Touched = now;
            if (state.Last == Unknown || message.Seq > state.Last + 1)
            {
                if (state.Held.Count == 0)
                {
                    state.HeldSince = now;
                }

                state.Held.TryAdd(message.Seq, message);
                if (state.Held.Count > MaxHeldPerChannel)
                {
                    ReleaseAll(state);
                }

                return;
            }

            _observe(Node.OnDeliverAsync(message));
            if (message.Seq == state.Last + 1)
            {
                state.Last = message.Seq;
                while (state.Held.Remove(state.Last + 1, out var next))
                {
                    _observe(Node.OnDeliverAsync(next));
                    state.Last++;
                }

                if (state.Held.Count > 0)
                {
                    // What is still held waits from now: it is behind another gap.
                    state.HeldSince = now;
                }
            }
        }
    }

    /// <summary>
    /// The channel stood at <paramref name="seq"/> of <paramref name="epoch"/> (a routing reply said so): its messages
    /// go on from there, so the next one passes at once instead of waiting out the hold, and those held waiting for
    /// where the channel starts go now, in order, up to a gap.
    /// </summary>
    public void Known(string app, string channel, string epoch, long seq)
    {
        if (_holdTicks == 0)
        {
            return;
        }

        lock (_gate)
        {
            var now = _time.GetTimestamp();
            var key = (app, channel);
            if (!_channels.TryGetValue(key, out var state))
            {
                _channels[key] = new ChannelOrder(epoch, seq) { Touched = now };
                return;
            }

            if (state.Epoch != epoch || state.Last != Unknown)
            {
                // Known already (the node's gap repair reads any gap), or another epoch (its messages decide).
                return;
            }

            state.Last = seq;
            while (state.Held.Count > 0 && state.Held.First() is var (first, held) && first <= state.Last + 1)
            {
                state.Held.Remove(first);
                _observe(Node.OnDeliverAsync(held));
                state.Last = Math.Max(state.Last, first);
            }

            if (state.Held.Count > 0)
            {
                state.HeldSince = now;
            }
        }
    }

    /// <summary>Releases what has been held past the hold, and forgets idle channels.</summary>
    public void Sweep()
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            List<(string, string)>? idle = null;
            foreach (var (key, state) in _channels)
            {
                if (state.Held.Count > 0 && now - state.HeldSince >= _holdTicks)
                {
                    ReleasedByTimeout += state.Held.Count;
                    ReleaseAll(state);
                }
                else if (state.Held.Count == 0 && _time.GetElapsedTime(state.Touched, now) > IdleChannel)
                {
                    (idle ??= []).Add(key);
                }
            }

            foreach (var key in idle ?? [])
            {
                _channels.Remove(key);
            }
        }
    }

    // Under the gate: everything held, in seq order; the channel goes on from the last of it.
    private void ReleaseAll(ChannelOrder state)
    {
        foreach (var (seq, held) in state.Held)
        {
            _observe(Node.OnDeliverAsync(held));
            state.Last = Math.Max(state.Last, seq);
        }

        state.Held.Clear();
    }

    private sealed class ChannelOrder(string epoch, long last)
    {
        public string Epoch { get; } = epoch;

        public long Last { get; set; } = last;

        public SortedDictionary<long, RelayMessage> Held { get; } = [];

        public long HeldSince { get; set; }

        public long Touched { get; set; }
    }
}
