namespace Relay.Auth.Verification;

/// <summary>Lets at most <see cref="PerSecond"/> log lines through each second; the rest are dropped, uncounted.</summary>
internal sealed class LogRateLimit(TimeProvider time)
{
    /// <summary>Enough to see what is being refused, too few to fill a disk when someone tries keys by the thousand.</summary>
    public const int PerSecond = 10;

    private long _windowStart = time.GetUtcNow().UtcTicks;
    private int _taken;

    public bool TryTake()
    {
        var now = time.GetUtcNow().UtcTicks;
        var start = Interlocked.Read(ref _windowStart);
        if (now - start >= TimeSpan.TicksPerSecond && Interlocked.CompareExchange(ref _windowStart, now, start) == start)
        {
            Interlocked.Exchange(ref _taken, 0);
        }

        return Interlocked.Increment(ref _taken) <= PerSecond;
    }
}
