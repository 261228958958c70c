namespace Relay.Bus.Routing;

/// <summary>Ask for a channel's present members.</summary>
public sealed record PresenceGetRequest(string App, string Channel) : RoutingRequest(App, Channel);
