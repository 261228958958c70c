using Relay.Core.Messages;

namespace Relay.Bus.Routing;

/// <summary>Sequence, store and deliver these messages, in order.</summary>
public sealed record PublishRequest(string App, string Channel, IReadOnlyList<PublishItem> Items, string? ClientId, string? TraceParent)
    : RoutingRequest(App, Channel);
