using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Relay.Bus;
using Relay.FanOut.Interest;

namespace Relay.FanOut;

/// <summary>Adds the fan-out service to a host.</summary>
public static class FanOutServiceCollectionExtensions
{
    /// <summary>Registers the interest table and the fan-out handler on the bus.</summary>
    public static IServiceCollection AddRelayFanOut(this IServiceCollection services)
    {
        services.AddRelayBus();
        services.TryAddSingleton<InterestTable>();
        services.TryAddSingleton<FanOutService>();
        services.AddHostedService(static sp => sp.GetRequiredService<FanOutService>());
        return services;
    }

    /// <summary>Maps the fan-out service's endpoints (none beyond the service defaults yet).</summary>
    public static IEndpointRouteBuilder MapRelayFanOut(this IEndpointRouteBuilder endpoints) => endpoints;
}
