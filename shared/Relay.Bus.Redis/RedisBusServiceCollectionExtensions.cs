using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using OpenTelemetry.Trace;
using Relay.Bus.Claims;
using Relay.Bus.Connections;
using Relay.Bus.Keys;
using Relay.Bus.Retained;
using Relay.Bus.Routing;
using Relay.Bus.Sessions;
using Relay.Bus.Shares;

namespace Relay.Bus.Redis;

/// <summary>Plugs the Redis bus into <c>AddRelayBus()</c>: <c>services.AddRelayBus().AddRedis()</c>.</summary>
public static class RedisBusServiceCollectionExtensions
{
    /// <summary>
    /// Replaces the in-memory bus with the Redis bus (<c>Relay:Redis</c>, validated at start-up; start-up waits for the
    /// connection and fails with a clear message when Redis cannot be reached) and registers the roles it plays: the
    /// channel authority routing serves (<see cref="IChannelAuthority"/>, state in Redis) and the key directory the auth
    /// service publishes to (<see cref="IKeyDirectory"/>), keeps MQTT's retained messages (<see cref="IRetainedStore"/>), tells the nodes of each other's client-id claims (<see cref="IClientClaims"/>) and which node delivers each message of a shared subscription's group (<see cref="IShareClaims"/>), and counts apps' connections across them (<see cref="IConnectionCounts"/>). It also keeps MQTT's persistent sessions between nodes (<see cref="ISessionStore"/>) and the last wills of their connections, published by another node when theirs dies (<see cref="IWillStore"/>). Fan-out needs no role of its own: the bus spreads its shards.
    /// <paramref name="configure"/> runs after the section is bound.
    /// </summary>
    public static IRelayBusBuilder AddRedis(this IRelayBusBuilder builder, Action<RedisBusOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        AddOptions(services, configure, busIsRedis: true);
        services.TryAddSingleton<RedisConnector>();

        // Redis calls become spans of the trace they serve (OpenTelemetry.Instrumentation.StackExchangeRedis) once a
        // tracer provider is built, which the service defaults do only with an OTLP endpoint set. The multiplexer is
        // the connector's, handed over when it connects: none is registered in DI.
        services.ConfigureOpenTelemetryTracerProvider(static tracing => tracing
            .AddRedisInstrumentation(static redis => redis.FlushInterval = RedisConnector.TraceFlushInterval)
            .ConfigureRedisInstrumentation(static (sp, instrumentation) => sp.GetRequiredService<RedisConnector>().Instrument(instrumentation)));
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<RedisBus>();

        // Replace, not TryAdd: AddRelayBus (called by every service) and a service's own authority may be registered
        // before or after this; whichever order, the Redis roles win.
        services.Replace(ServiceDescriptor.Singleton<IRelayBus>(static sp => sp.GetRequiredService<RedisBus>()));
        services.TryAddSingleton<RedisChannelAuthority>();
        services.Replace(ServiceDescriptor.Singleton<IChannelAuthority>(static sp => sp.GetRequiredService<RedisChannelAuthority>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IKeyDirectory, RedisKeyDirectory>());
        services.Replace(ServiceDescriptor.Singleton<IRetainedStore, RedisRetainedStore>());
        services.Replace(ServiceDescriptor.Singleton<IClientClaims, RedisClientClaims>());
        services.Replace(ServiceDescriptor.Singleton<ISessionStore, RedisSessionStore>());
        services.Replace(ServiceDescriptor.Singleton<IWillStore, RedisWillStore>());
        services.Replace(ServiceDescriptor.Singleton<IShareClaims, RedisShareClaims>());
        services.Replace(ServiceDescriptor.Singleton<IConnectionCounts, RedisConnectionCounts>());
        AddStartupFirst(services);
        return builder;
    }

    /// <summary>
    /// The hosts' one choice of bus: <see cref="AddRedis"/> when <c>Relay:Bus</c> is <c>redis</c>; otherwise the in-memory
    /// bus stays, and <c>Relay:Bus</c> (<c>memory</c> or <c>redis</c>) and any <c>Relay:Redis</c> connection settings are
    /// still checked at start-up.
    /// </summary>
    public static IRelayBusBuilder AddRedisWhenConfigured(this IRelayBusBuilder builder, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configuration);
        if (IsRedis(configuration[RedisBusOptions.BusKey]))
        {
            return builder.AddRedis();
        }

        AddOptions(builder.Services, configure: null, busIsRedis: false);
        return builder;
    }

    // The connection is made before any service starts (the hosts add the bus after their services, where AddRelayBus()
    // inside the first AddRelayX() used to put it): hosted services start in registration order.
    private static void AddStartupFirst(IServiceCollection services)
    {
        if (services.Any(static d => d.ServiceType == typeof(IHostedService) && d.ImplementationType == typeof(RedisBusStartup)))
        {
            return;
        }

        var first = 0;
        while (first < services.Count && services[first].ServiceType != typeof(IHostedService))
        {
            first++;
        }

        services.Insert(first, ServiceDescriptor.Singleton<IHostedService, RedisBusStartup>());
    }

    internal static bool IsRedis(string? bus) => string.Equals(bus, "redis", StringComparison.OrdinalIgnoreCase);

    internal static bool IsMemory(string? bus) => string.Equals(bus, "memory", StringComparison.OrdinalIgnoreCase);

    private static void AddOptions(IServiceCollection services, Action<RedisBusOptions>? configure, bool busIsRedis)
    {
        var options = services.AddOptions<RedisBusOptions>().BindConfiguration(RedisBusOptions.SectionName).ValidateOnStart();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        services.RemoveAll<IValidateOptions<RedisBusOptions>>();
        services.AddSingleton<IValidateOptions<RedisBusOptions>>(sp => new RedisBusOptionsValidator(sp.GetRequiredService<IConfiguration>(), busIsRedis, sp.GetService<TimeProvider>() ?? TimeProvider.System));
    }

    /// <summary>Connects the Redis bus during start-up, so a wrong endpoint stops the host with its message.</summary>
    private sealed class RedisBusStartup(RedisBus bus, IOptions<RedisBusOptions> options) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            try
            {
                await bus.ReadyAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
            {
                throw new InvalidOperationException($"cannot reach Redis at {options.Value.Describe()} (Relay:Redis:Configuration): the connection attempt was given up. Start Redis or fix the setting.", e);
            }
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
