using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Relay.Bus.InMemory;

namespace Relay.Bus;

/// <summary>Registers a bus.</summary>
public static class BusServiceCollectionExtensions
{
    /// <summary>Registers the in-memory bus (one process) unless a bus is already registered.</summary>
    public static IServiceCollection AddRelayInMemoryBus(this IServiceCollection services)
    {
        services.TryAddSingleton<IRelayBus, InMemoryBus>();
        return services;
    }
}
