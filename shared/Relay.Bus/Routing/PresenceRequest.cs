namespace Relay.Bus.Routing;

/// <summary>
/// Change a connection's presence on a channel: <c>enter</c>, <c>update</c> or <c>leave</c>. Members are per
/// (clientId, connectionId); <c>enter</c> and <c>leave</c> events go out only for a client's first and last connection.
/// <see cref="NodeId"/> is the ingress node holding the connection, so a node that dies takes its members with it.
/// </summary>
public sealed record PresenceRequest(string App, string Channel, string Action, string ClientId, string ConnectionId, ReadOnlyMemory<byte> Data, string? NodeId = null)
    : RoutingRequest(App, Channel);
