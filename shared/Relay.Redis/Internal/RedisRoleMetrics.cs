using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Relay.Redis.Internal;

/// <summary>
/// The counts of one kind of connection (<c>command</c> or <c>subscriber</c>) under one meter factory: interlocked
/// fields that <see cref="RedisMetrics"/> exposes as observable instruments, so a command costs one add.
/// </summary>
internal sealed class RedisRoleMetrics(string role, Histogram<double> roundTrip)
{
    private readonly long[] _errors = new long[RedisMetrics.ErrorKindNames.Length];
    private long _commands;
    private long _reconnects;
    private long _connected;
    private volatile bool _used;

    /// <summary>The <c>connection</c> tag of every series of this role.</summary>
    public KeyValuePair<string, object?> Tag { get; } = new("connection", role);

    /// <summary>A connection of this role was made: its series are reported from now on (zeros included).</summary>
    public bool Used => _used;

    public long Commands => Interlocked.Read(ref _commands);

    public long Reconnects => Interlocked.Read(ref _reconnects);

    public long Connected => Interlocked.Read(ref _connected);

    /// <summary>Round trips are timed only while someone listens to the histogram.</summary>
    public bool TimesRoundTrips => roundTrip.Enabled;

    public long Errors(int kind) => Interlocked.Read(ref _errors[kind]);

    public void Attach() => _used = true;

    public void Sent() => Interlocked.Increment(ref _commands);

    public void Error(RedisErrorKind kind) => Interlocked.Increment(ref _errors[(int)kind]);

    public void Reconnected() => Interlocked.Increment(ref _reconnects);

    /// <summary>+1 when a connection becomes Connected, -1 when it leaves that state.</summary>
    public void ConnectedChanged(int delta) => Interlocked.Add(ref _connected, delta);

    /// <summary>Records a round trip that started at <paramref name="started"/> (<see cref="Stopwatch.GetTimestamp"/>).</summary>
    public void RoundTrip(long started) => roundTrip.Record(Stopwatch.GetElapsedTime(started).TotalSeconds, Tag);
}
