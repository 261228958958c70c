using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Relay.Pusher;

namespace Relay.Ingress.Pusher;

/// <summary>Adds the Pusher Channels protocol (WebSocket and HTTP API) to the ingress node.</summary>
public static class PusherServiceCollectionExtensions
{
    /// <summary>Registers the Pusher options (<c>Relay:Pusher</c>), what the connections share and the apps' webhooks.</summary>
    public static IServiceCollection AddRelayPusher(this IServiceCollection services)
    {
        // The options and the webhooks: taps of fan-out (occupancy, members) where this process serves fan-out, and told by
        // the connections (client events, cache misses).
        services.AddRelayPusherWebhooks();
        services.TryAddSingleton<PusherBroker>();
        services.TryAddSingleton<PusherHttpSessions>();
        return services;
    }

    /// <summary>Maps the WebSocket at <c>/app/{key}</c>, its HTTP fallbacks at <c>/pusher/app/{key}/…</c> and the HTTP API at <c>/apps/{app_id}</c> when Pusher is enabled.</summary>
    public static IEndpointRouteBuilder MapRelayPusher(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetRequiredService<IOptions<PusherOptions>>().Value.Enabled)
        {
            PusherWebSocketEndpoint.Map(endpoints);
            PusherHttpEndpoint.Map(endpoints);
            PusherHttpApi.Map(endpoints);
        }

        return endpoints;
    }
}
