using Relay.Bench.Load;

namespace Relay.Bench.Scenarios;

/// <summary>What one target did in one scenario.</summary>
internal sealed record ScenarioResult
{
    public required string Scenario { get; init; }

    public required string Target { get; init; }

    /// <summary>Messages delivered to subscribers per second during the measured interval.</summary>
    public double DeliveredPerSecond { get; init; }

    /// <summary>Messages published per second during the measured interval.</summary>
    public double PublishedPerSecond { get; init; }

    public LatencySummary? Latency { get; init; }

    /// <summary>Server CPU time over the measured interval, in cores (1.0 = one core busy all the time).</summary>
    public double ServerCpuCores { get; init; }

    /// <summary>
    /// The server thread that used the most CPU over the measured interval, in cores: near 1.0 while the process uses
    /// little more means one thread bounds the server's throughput.
    /// </summary>
    public double? BusiestThreadCores { get; init; }

    /// <summary>That thread's name (<c>/proc/PID/task/TID/comm</c>).</summary>
    public string? BusiestThreadName { get; init; }

    public long PeakRssBytes { get; init; }

    public int Connections { get; init; }

    /// <summary>Idle scenario: server resident memory added per subscribed connection.</summary>
    public double? RssPerConnectionBytes { get; init; }

    /// <summary>Messages published and never delivered to a subscriber still connected at the end.</summary>
    public long Lost { get; init; }

    /// <summary>Deliveries beyond what was published to the subscriber's channel (a message delivered twice).</summary>
    public long Extra { get; init; }

    /// <summary>Subscribers the server disconnected during the run.</summary>
    public int Disconnected { get; init; }

    /// <summary>
    /// When a count came out wrong (lost, extra, cut): which channels and subscribers, how long the harness waited for
    /// stragglers, and the warnings the services logged, so a failed smoke run says what happened. Null otherwise.
    /// </summary>
    public string? Miscount { get; init; }

    /// <summary>
    /// What the target's redis-server did over the measured interval (relay-redis only): commands, bytes in + out and
    /// CPU, per publish (fan-out scenarios) or per subscribed connection (idle: over the connecting phase).
    /// </summary>
    public double? RedisCommandsPer { get; init; }

    /// <inheritdoc cref="RedisCommandsPer"/>
    public double? RedisBytesPer { get; init; }

    /// <summary>redis-server's CPU per publish or per subscribed connection, in microseconds.</summary>
    public double? RedisCpuMicrosPer { get; init; }

    /// <summary>redis-server's CPU over the measured interval, in cores (idle: while the connections sat idle).</summary>
    public double? RedisCpuCores { get; init; }

    /// <summary>The soak run's samples, counts and verdict (soak scenario only).</summary>
    public SoakFigures? Soak { get; init; }

    /// <summary>Why the run produced no figures, when it did not.</summary>
    public string? Error { get; init; }
}
