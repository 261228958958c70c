namespace Relay.Bench.Scenarios;

/// <summary>
/// One soak connection's view of its channel across reconnects. The publisher stamps each message with its number on
/// the channel, which is the channel's <c>seq</c> (one publisher, every publish acknowledged, a fresh server), so a
/// subscriber must see 1, 2, 3, … with nothing skipped or repeated, however often it reconnects and resumes with
/// <c>since</c>. A socket being replaced stops counting the moment it is cut (its generation ends): what it would still
/// have delivered comes back through <c>since</c>. A jump the server announced (its reply to the resume said
/// <c>recovered: false</c>: the connection was away longer than history keeps) counts as skipped, not missed.
/// </summary>
internal sealed class SoakTracker(int channel)
{
    private readonly Lock _gate = new();
    private int _generation;
    private long _last;

    public int Channel { get; } = channel;

    /// <summary>The channel's epoch, from the last socket's frames (null before the first subscribe reply).</summary>
    public string? Epoch { get; set; }

    public int Generation
    {
        get
        {
            lock (_gate)
            {
                return _generation;
            }
        }
    }

    /// <summary>The last message number received in order.</summary>
    public long Last
    {
        get
        {
            lock (_gate)
            {
                return _last;
            }
        }
    }

    public long Deliveries { get; private set; }

    /// <summary>Messages skipped unannounced: a number arrived past <see cref="Last"/> + 1.</summary>
    public long Missed { get; private set; }

    /// <summary>Messages skipped after the server said <c>recovered: false</c> (the protocol's way of saying so).</summary>
    public long Skipped { get; private set; }

    /// <summary>Messages at or below <see cref="Last"/>: delivered twice, or out of order.</summary>
    public long Duplicates { get; private set; }

    public void OnStamp(int generation, long number, bool announced)
    {
        lock (_gate)
        {
            if (generation != _generation)
            {
                return;
            }

            Deliveries++;
            if (number == _last + 1)
            {
                _last = number;
            }
            else if (number <= _last)
            {
                Duplicates++;
            }
            else
            {
                if (announced)
                {
                    Skipped += number - _last - 1;
                }
                else
                {
                    Missed += number - _last - 1;
                }

                _last = number;
            }
        }
    }

    /// <summary>Ends the current socket's generation: returns the new one and where to resume.</summary>
    public (int Generation, long Since) Cut()
    {
        lock (_gate)
        {
            return (++_generation, _last);
        }
    }
}
