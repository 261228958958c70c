using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Relay.Bus;
using Relay.Bus.Routing;

namespace Relay.Routing;

/// <summary>
/// Serves the channel authority the bus registration chose on the bus, and runs its upkeep until stopped: the in-memory
/// one sweeps its idle channels; the Redis bus's keeps its state in Redis, where keys expire.
/// </summary>
/// <remarks>
/// The authority goes on the bus in <see cref="StartAsync"/>, before the host's start returns: .NET 10 runs all of
/// <see cref="BackgroundService.ExecuteAsync"/> after it, so serving from there let a request made the moment the host
/// had started find no routing (50300). With a meter factory (every host has one) the authority is served through
/// <see cref="RoutingMetrics"/>, which counts what it handles.
/// </remarks>
internal sealed class RoutingHost(IRelayBus bus, IChannelAuthority authority, IMeterFactory? meters = null) : BackgroundService
{
    private IDisposable? _registration;

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        _registration = bus.ServeRouting(meters is null ? authority : new RoutingMetrics(authority, meters));
        return base.StartAsync(cancellationToken);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await base.StopAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            // Gives the shards back.
            _registration?.Dispose();
        }
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => authority.RunAsync(stoppingToken);
}
