using Relay.Core.Messages;

namespace Relay.Bus.Dapr;

/// <summary>
/// Fan-out's memory of the seqs it has passed on, per channel: Dapr redelivers the sequenced topic's messages, and each
/// copy fan-out passes on is published again to every interested node's topic, where Dapr may redeliver it once more
/// (at two copies a hop, four to every node). A seq already passed on is dropped here. Seqs may come in any order, so
/// the memory is the newest seq and a bitmap of the <see cref="Window"/> before it; a seq older than that, or of a
/// channel forgotten for being idle, is passed on (nodes drop what they already have: this only saves traffic).
/// Presence events and messages without a seq always pass.
/// </summary>
internal sealed class DaprFanOutDedupe
{
    /// <summary>Seqs behind a channel's newest that are remembered: more than a reorder window's worth at thousands a second.</summary>
    internal const int Window = 256;

    // A channel with no message for this long is forgotten.
    private static readonly TimeSpan IdleChannel = TimeSpan.FromMinutes(1);

    private readonly Dictionary<(string App, string Channel), Seen> _channels = [];
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private long _dropped;

    public DaprFanOutDedupe(TimeProvider time) => _time = time;

    /// <summary>Copies dropped so far.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>False when <paramref name="message"/>'s seq was already passed on (a redelivered copy).</summary>
    public bool IsFirst(RelayMessage message)
    {
        if (message.Seq <= 0 || message.PresenceAction is not null)
        {
            return true;
        }

        lock (_gate)
        {
            var now = _time.GetTimestamp();
            var key = (message.App, message.Channel);
            if (!_channels.TryGetValue(key, out var seen) || !string.Equals(seen.Epoch, message.Epoch, StringComparison.Ordinal))
            {
                if (seen is null)
                {
                    _channels[key] = seen = new Seen();
                }

                seen.Reset(message.Epoch, message.Seq);
                seen.Touched = now;
                return true;
            }

            seen.Touched = now;
            if (seen.TryAdd(message.Seq))
            {
                return true;
            }

            Interlocked.Increment(ref _dropped);
            return false;
        }
    }

    /// <summary>Forgets channels idle for a minute.</summary>
    public void Sweep()
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            List<(string, string)>? idle = null;
            foreach (var (key, seen) in _channels)
            {
                if (_time.GetElapsedTime(seen.Touched, now) > IdleChannel)
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

    /// <summary>Channels remembered now.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _channels.Count;
            }
        }
    }

    // The newest seq and which of the Window seqs before it (bit d: Newest - d) were passed on.
    private sealed class Seen
    {
        private readonly ulong[] _bits = new ulong[Window / 64];

        public string Epoch { get; private set; } = "";

        public long Newest { get; private set; }

        public long Touched { get; set; }

        public void Reset(string epoch, long seq)
        {
            Epoch = epoch;
            Newest = seq;
            Array.Clear(_bits);
            _bits[0] = 1;
        }

        // True when seq was not passed on yet (and is now remembered), or is too old to know.
        public bool TryAdd(long seq)
        {
            if (seq > Newest)
            {
                Shift(seq - Newest);
                Newest = seq;
                _bits[0] |= 1;
                return true;
            }

            var behind = Newest - seq;
            if (behind >= Window)
            {
                return true;
            }

            var word = (int)(behind / 64);
            var bit = 1UL << (int)(behind % 64);
            if ((_bits[word] & bit) != 0)
            {
                return false;
            }

            _bits[word] |= bit;
            return true;
        }

        // Moves every remembered seq `by` places further behind the newest (bit i to bit i + by).
        private void Shift(long by)
        {
            if (by >= Window)
            {
                Array.Clear(_bits);
                return;
            }

            var words = (int)(by / 64);
            var bits = (int)(by % 64);
            for (var i = _bits.Length - 1; i >= 0; i--)
            {
                var from = i - words;
                var value = from >= 0 ? _bits[from] << bits : 0;
                if (bits != 0 && from - 1 >= 0)
                {
                    value |= _bits[from - 1] >> (64 - bits);
                }

                _bits[i] = value;
            }
        }
    }
}
