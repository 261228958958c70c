using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus;
using Relay.Bus.Redis;
using Relay.Routing.Channels;

namespace Relay.Routing;

/// <summary>
/// Serves the channel authority on the bus: with the in-memory bus the one in this process (and sweeps its idle channels),
/// with the Redis bus the one whose state lives in Redis (keys expire there; nothing to sweep).
/// </summary>
internal sealed class RoutingHost(IRelayBus bus, IServiceProvider services, TimeProvider time, IOptions<RoutingOptions> options) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (RedisBusServiceCollectionExtensions.UsesRedis(services))
        {
            using var shards = bus.ServeRouting(services.GetRequiredService<RedisChannelAuthority>());
            try
            {
                await Task.Delay(Timeout.Infinite, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                // Stopping: the registration gives the shards back.
            }

            return;
        }

        var authority = services.GetRequiredService<ChannelAuthority>();
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
