namespace Relay.Bus.Routing;

/// <summary>What a routing shard does with requests the bus brings it.</summary>
public interface IRoutingHandler
{
    /// <summary>Handles one request.</summary>
    ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken);
}
