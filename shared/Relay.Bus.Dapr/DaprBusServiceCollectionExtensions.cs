using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Relay.Bus.Redis;

namespace Relay.Bus.Dapr;

/// <summary>Plugs the Dapr bus into <c>AddRelayBus()</c>: <c>services.AddRelayBus().AddDapr()</c>.</summary>
public static class DaprBusServiceCollectionExtensions
{
    /// <summary>
    /// Replaces the bus with the Dapr bus (<c>Relay:Dapr</c>, validated at start-up). Channel state stays in Redis: this
    /// adds the Redis bus's roles too (<c>AddRedis()</c>: the channel authority routing serves, its shard leases, the key
    /// directory), so <c>Relay:Redis:Configuration</c> is required. Map the sidecar's endpoints with
    /// <see cref="DaprBusEndpoints.MapRelayDaprBus"/>.
    /// </summary>
    public static IRelayBusBuilder AddDapr(this IRelayBusBuilder builder, Action<DaprBusOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;

        // Redis keeps the state and routing's leases: its options get the Redis bus's own full check (Relay:Bus=dapr
        // included), as on the Redis bus.
        builder.AddRedis();

        var options = services.AddOptions<DaprBusOptions>().BindConfiguration(DaprBusOptions.SectionName).ValidateOnStart();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<DaprBusOptions>, DaprBusOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<DaprBus>();
        services.Replace(ServiceDescriptor.Singleton<IRelayBus>(static sp => sp.GetRequiredService<DaprBus>()));
        return builder;
    }

    /// <summary>The hosts' choice: <see cref="AddDapr"/> when <c>Relay:Bus</c> is <c>dapr</c>; nothing otherwise.</summary>
    public static IRelayBusBuilder AddDaprWhenConfigured(this IRelayBusBuilder builder, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configuration);
        return IsDapr(configuration[RedisBusOptions.BusKey]) ? builder.AddDapr() : builder;
    }

    internal static bool IsDapr(string? bus) => string.Equals(bus, "dapr", StringComparison.OrdinalIgnoreCase);
}
