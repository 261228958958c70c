using Microsoft.Extensions.Hosting;
using Relay.Bus;
using Relay.Bus.Routing;

namespace Relay.Routing;

/// <summary>
/// Serves the channel authority the bus registration chose on the bus, and runs its upkeep until stopped: the in-memory
/// one sweeps its idle channels; the Redis bus's keeps its state in Redis, where keys expire.
/// </summary>
internal sealed class RoutingHost(IRelayBus bus, IChannelAuthority authority) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Disposing the registration gives the shards back.
        using var registration = bus.ServeRouting(authority);
        await authority.RunAsync(stoppingToken).ConfigureAwait(false);
    }
}
