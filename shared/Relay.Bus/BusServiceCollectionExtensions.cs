using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Relay.Bus.Claims;
using Relay.Bus.Connections;
using Relay.Bus.InMemory;
using Relay.Bus.Retained;
using Relay.Bus.Sessions;
using Relay.Bus.Shares;

namespace Relay.Bus;

/// <summary>Registers the bus.</summary>
public static class BusServiceCollectionExtensions
{
    /// <summary>
    /// Registers the in-memory bus (one process) unless a bus is already registered, and returns the builder another bus
    /// plugs into (<c>AddRedis</c> in <c>Relay.Bus.Redis</c>). Every service's <c>AddRelayX()</c> calls it; calling it
    /// again changes nothing. In memory the roles are the services' own: routing serves its in-process
    /// <see cref="Routing.IChannelAuthority"/>, and no <see cref="Keys.IKeyDirectory"/> is needed, since every service
    /// shares the auth service's key store.
    /// </summary>
    public static IRelayBusBuilder AddRelayBus(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<InMemoryBus>();
        services.TryAddSingleton<IRelayBus>(static sp => sp.GetRequiredService<InMemoryBus>());
        services.TryAddSingleton<IRetainedStore, InMemoryRetainedStore>();
        services.TryAddSingleton<IClientClaims, InMemoryClientClaims>();
        services.TryAddSingleton<ISessionStore, InMemorySessionStore>();
        services.TryAddSingleton<IWillStore, InMemoryWillStore>();
        services.TryAddSingleton<IShareClaims, InMemoryShareClaims>();
        services.TryAddSingleton<IConnectionCounts, InMemoryConnectionCounts>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, InMemoryBusCheck>());
        return new RelayBusBuilder(services);
    }
}
