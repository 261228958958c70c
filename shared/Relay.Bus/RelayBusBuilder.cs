using Microsoft.Extensions.DependencyInjection;

namespace Relay.Bus;

/// <summary>The one builder over a service collection.</summary>
internal sealed class RelayBusBuilder(IServiceCollection services) : IRelayBusBuilder
{
    public IServiceCollection Services { get; } = services;
}
