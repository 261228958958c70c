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
        var elapsed = (double)(timestamp - _last) / frequency;
        _last = timestamp;
        _tokens = Math.Min(capacity, _tokens + (elapsed * ratePerSecond));
        if (_tokens < 1)
        {
            return false;
        }

        _tokens--;
        return true;
    }
}
