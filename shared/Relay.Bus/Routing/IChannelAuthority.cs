namespace Relay.Bus.Routing;

/// <summary>
/// What a routing host serves on the bus: the channels' seq, epoch, history and presence. The routing service registers
/// its in-process authority (state in memory, swept when idle); a bus that keeps channel state itself (the Redis bus)
/// replaces it with its own, so the routing host never asks which bus it runs on.
/// </summary>
public interface IChannelAuthority : IRoutingHandler
{
    /// <summary>
    /// Runs the authority's upkeep while the host serves it (the in-memory one sweeps idle channels; one whose state
    /// expires by itself waits), and returns once <paramref name="stoppingToken"/> is cancelled.
    /// </summary>
    Task RunAsync(CancellationToken stoppingToken);
}
