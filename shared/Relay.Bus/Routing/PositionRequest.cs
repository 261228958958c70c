namespace Relay.Bus.Routing;

/// <summary>Ask for a channel's epoch and latest seq.</summary>
public sealed record PositionRequest(string App, string Channel) : RoutingRequest(App, Channel);
