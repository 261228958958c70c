using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Relay.Bus;
using Relay.Bus.Routing;
using Relay.Functions.Hooks;
using Relay.Functions.Webhooks;

namespace Relay.Functions;

/// <summary>
/// Fails start-up when configured hooks or occupancy webhooks would silently not run: a bus registered after
/// <c>AddRelayFunctionHooks()</c>/<c>AddRelayWebhooks()</c> replaces what they wrapped.
/// </summary>
internal sealed class FunctionsStartupCheck(IServiceProvider services) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (services.GetService<HookTable>() is { Any: true } && services.GetService<IChannelAuthority>() is not HookedChannelAuthority)
        {
            throw new InvalidOperationException("Relay:Functions configures hooks, but the channel authority was registered after AddRelayFunctionHooks(): call it after AddRelayBus() and its AddRedis().");
        }

        if (services.GetService<WebhookDispatcher>() is { WantsOccupancy: true } && services.GetService<IRelayBus>() is not OccupancyBus)
        {
            throw new InvalidOperationException("Relay:Functions:Webhooks asks for occupancy events, but the bus was registered after AddRelayWebhooks(): call it after AddRelayBus() and its AddRedis().");
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
