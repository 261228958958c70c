namespace Relay.Ingress.Realtime;

/// <summary>
/// A token bucket refilled lazily from timestamps, so a rate limit costs no timer. Not thread-safe: a connection's
/// buckets are used by its one receive loop; the buckets shared by an app's connections or an address's accepts
/// (<c>Limits/AppLimits</c>, <c>Connections/AddressLimits</c>) are taken under their owner's lock.
/// </summary>
internal sealed class TokenBucket(int ratePerSecond, int capacity, long startTimestamp)
{
    private double _tokens = capacity;
    private long _last = startTimestamp;

    /// <summary>Takes <paramref name="count"/> tokens, or none (false) when fewer are there.</summary>
    public bool TryTake(long timestamp, long frequency, int count = 1)
    {
        // A timestamp older than the last (a burst's shared reading, taken before the bucket's start) refills nothing.
        var elapsed = Math.Max(0, (double)(timestamp - _last) / frequency);
        _last = Math.Max(_last, timestamp);
        _tokens = Math.Min(capacity, _tokens + (elapsed * ratePerSecond));
        if (_tokens < count)
        {
            return false;
        }

        _tokens -= count;
        return true;
    }

    /// <summary>Whether the bucket would be full at <paramref name="timestamp"/> (an idle one can be forgotten).</summary>
    public bool IsFullAt(long timestamp, long frequency) =>
        _tokens + (Math.Max(0, (double)(timestamp - _last) / frequency) * ratePerSecond) >= capacity;
}
