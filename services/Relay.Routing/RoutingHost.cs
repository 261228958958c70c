using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Relay.Bus;
using Relay.Routing.Channels;

namespace Relay.Routing;

/// <summary>Serves the channel authority on the bus and sweeps idle channels.</summary>
internal sealed class RoutingHost(IRelayBus bus, ChannelAuthority authority, TimeProvider time, IOptions<RoutingOptions> options) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var registration = bus.ServeRouting(authority);
        using var timer = new PeriodicTimer(options.Value.SweepInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                authority.Sweep();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }
}
