namespace Relay.Routing;

/// <summary>Options of the routing service, bound from <c>Relay:Routing</c>.</summary>
public sealed class RoutingOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Routing";

    /// <summary>The idempotency window the protocol promises (spec: 2 minutes; <see cref="Relay.Bus.Routing.PublishRequest.IdempotencyWindow"/>).</summary>
    public static readonly TimeSpan IdempotencyWindow = Relay.Bus.Routing.PublishRequest.IdempotencyWindow;

    /// <summary>How often idle channels are swept from memory (their epoch changes if used again).</summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromSeconds(30);
}
