namespace Relay.Bus.Routing;

/// <summary>A request to the routing shard that owns <see cref="App"/> + <see cref="Channel"/>.</summary>
/// <param name="App">The app.</param>
/// <param name="Channel">The channel.</param>
public abstract record RoutingRequest(string App, string Channel);
