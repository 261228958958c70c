using Microsoft.Extensions.DependencyInjection;

namespace Relay.Bus;

/// <summary>
/// What <see cref="BusServiceCollectionExtensions.AddRelayBus"/> returns: a bus implementation plugs in as an extension
/// of it (<c>services.AddRelayBus().AddRedis()</c>), replacing the in-memory bus and registering the roles it plays.
/// </summary>
public interface IRelayBusBuilder
{
    /// <summary>The services the bus is registered in.</summary>
    IServiceCollection Services { get; }
}
