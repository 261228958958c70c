namespace Relay.Routing;

/// <summary>Options of the routing service, bound from <c>Relay:Routing</c>.</summary>
public sealed class RoutingOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Routing";

    /// <summary>Default messages kept per channel: enough for a reconnecting client to catch up on a busy channel.</summary>
    public const int DefaultHistorySize = 200;

    /// <summary>Default age of kept messages: covers a phone switching networks or a laptop waking up.</summary>
    public static readonly TimeSpan DefaultHistoryTtl = TimeSpan.FromMinutes(5);

    /// <summary>The idempotency window the protocol promises (spec: 2 minutes).</summary>
    public static readonly TimeSpan IdempotencyWindow = TimeSpan.FromMinutes(2);

    /// <summary>Messages kept per channel (0 turns history, and so recovery, off).</summary>
    public int HistorySize { get; set; } = DefaultHistorySize;

    /// <summary>How long messages are kept.</summary>
    public TimeSpan HistoryTtl { get; set; } = DefaultHistoryTtl;

    /// <summary>How often idle channels are swept from memory (their epoch changes if used again).</summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromSeconds(30);
}
