using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Relay.Bus;
using Relay.Bus.Routing;
using Relay.Routing.Channels;
using Relay.ServiceDefaults;

namespace Relay.Routing;

/// <summary>Adds the routing service to a host.</summary>
public static class RoutingServiceCollectionExtensions
{
    /// <summary>
    /// Registers the channel authority, its options (<c>Relay:Routing</c>) and its bus registration. The in-process
    /// <see cref="ChannelAuthority"/> is the <see cref="IChannelAuthority"/> served unless the bus registered its own
    /// (<c>AddRelayBus().AddRedis()</c>), in either order.
    /// </summary>
    public static IServiceCollection AddRelayRouting(this IServiceCollection services)
    {
        services.AddOptions<RoutingOptions>().BindConfiguration(RoutingOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RoutingOptions>, RoutingOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.AddRelayNamespaces();
        services.AddRelayBus();
        services.TryAddSingleton<ChannelAuthority>();
        services.TryAddSingleton<IChannelAuthority>(static sp => sp.GetRequiredService<ChannelAuthority>());
        services.AddHostedService<RoutingHost>();
        return services;
    }

    /// <summary>Maps the routing service's endpoints (none beyond the service defaults yet).</summary>
    public static IEndpointRouteBuilder MapRelayRouting(this IEndpointRouteBuilder endpoints) => endpoints;
}
