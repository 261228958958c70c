using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Relay.Bus.InMemory;
using OpenTelemetry.Trace;

namespace Relay.Bus.Redis;

/// <summary>Registers the bus chosen by <c>Relay:Bus</c>: the in-memory bus (default) or the Redis bus (<c>Relay:Redis</c>).</summary>
public static class RedisBusServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="IRelayBus"/> as chosen by <c>Relay:Bus</c> (<c>memory</c> or <c>redis</c>), validated at start-up;
    /// with <c>redis</c>, start-up waits for the connection and fails with a clear message when Redis cannot be reached.
    /// </summary>
    public static IServiceCollection AddRelayBus(this IServiceCollection services)
    {
        services.AddOptions<RedisBusOptions>().BindConfiguration(RedisBusOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RedisBusOptions>, RedisBusOptionsValidator>());
        services.TryAddSingleton<RedisConnector>();

        // Redis calls become spans of the trace they serve (OpenTelemetry.Instrumentation.StackExchangeRedis) once a
        // tracer provider is built, which the service defaults do only with an OTLP endpoint set. The multiplexer is
        // the connector's, handed over when it connects: none is registered in DI, so the instrumentation never
        // resolves (and connects) one on a host whose bus is in memory.
        services.ConfigureOpenTelemetryTracerProvider(static tracing => tracing
            .AddRedisInstrumentation(static redis => redis.FlushInterval = RedisConnector.TraceFlushInterval)
            .ConfigureRedisInstrumentation(static (sp, instrumentation) => sp.GetRequiredService<RedisConnector>().Instrument(instrumentation)));
        services.TryAddSingleton<InMemoryBus>();
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<RedisBus>();
        services.TryAddSingleton<IRelayBus>(static sp => UsesRedis(sp) ? sp.GetRequiredService<RedisBus>() : sp.GetRequiredService<InMemoryBus>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, RedisBusStartup>());
        return services;
    }

    /// <summary>Whether this host's configuration selects the Redis bus.</summary>
    public static bool UsesRedis(IServiceProvider services) =>
        IsRedis(services.GetRequiredService<IConfiguration>()[RedisBusOptions.BusKey]);

    internal static bool IsRedis(string? bus) => string.Equals(bus, "redis", StringComparison.OrdinalIgnoreCase);

    internal static bool IsMemory(string? bus) => string.Equals(bus, "memory", StringComparison.OrdinalIgnoreCase);

    /// <summary>Connects the Redis bus during start-up, so a wrong endpoint stops the host with its message.</summary>
    private sealed class RedisBusStartup(IServiceProvider services) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            if (!UsesRedis(services))
            {
                return;
            }

            try
            {
                await services.GetRequiredService<RedisBus>().ReadyAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
            {
                var options = services.GetRequiredService<IOptions<RedisBusOptions>>().Value;
                throw new InvalidOperationException($"cannot reach Redis at {options.Describe()} (Relay:Redis:Configuration): the connection attempt was given up. Start Redis or fix the setting.", e);
            }
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
