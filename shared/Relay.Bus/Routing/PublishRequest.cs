using Relay.Core.Messages;

namespace Relay.Bus.Routing;

/// <summary>Sequence, store and deliver these messages, in order.</summary>
public sealed record PublishRequest(string App, string Channel, IReadOnlyList<PublishItem> Items, string? ClientId, string? TraceParent)
    : RoutingRequest(App, Channel)
{
    /// <summary>How long a message id is remembered for deduplication: the window the protocol promises (2 minutes).</summary>
    public static readonly TimeSpan IdempotencyWindow = TimeSpan.FromMinutes(2);
}
