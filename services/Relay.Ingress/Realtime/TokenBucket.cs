namespace Relay.Ingress.Realtime;

/// <summary>
/// A token bucket refilled lazily from timestamps, so a connection's rate limit costs no timer. Used by one
/// receive loop at a time, so it needs no lock.
/// </summary>
internal sealed class TokenBucket(int ratePerSecond, int capacity, long startTimestamp)
{
    private double _tokens = capacity;
    private long _last = startTimestamp;

    public bool TryTake(long timestamp, long frequency)
    {
        // A timestamp older than the last (a burst's shared reading, taken before the bucket's start) refills nothing.
        var elapsed = Math.Max(0, (double)(timestamp - _last) / frequency);
        _last = Math.Max(_last, timestamp);
        _tokens = Math.Min(capacity, _tokens + (elapsed * ratePerSecond));
        if (_tokens < 1)
        {
            return false;
        }

        _tokens--;
        return true;
    }
}
