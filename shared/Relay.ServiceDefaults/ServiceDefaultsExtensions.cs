using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Relay.ServiceDefaults.Memory;
using Relay.ServiceDefaults.Telemetry;
using Relay.ServiceDefaults.Tls;

namespace Relay.ServiceDefaults;

/// <summary>What every Relay service host adds: health checks, telemetry, the clock, and the shared endpoints.</summary>
public static class ServiceDefaultsExtensions
{
    /// <summary>The tag of health checks that gate readiness (<c>/readyz</c>).</summary>
    public const string ReadyTag = "ready";

    /// <summary>
    /// Adds health checks, OpenTelemetry (metrics for <c>/metrics</c>; traces and OTLP export when
    /// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is configured), the quiet-time heap trim and <see cref="TimeProvider"/>.
    /// Returns the builder's services, for the module's registration.
    /// </summary>
    public static IServiceCollection AddRelayServiceDefaults(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        services.TryAddSingleton(TimeProvider.System);
        services.AddHealthChecks();
        services.AddMetrics();
        builder.AddRelayTelemetry();
        services.AddOptions<MemoryOptions>().BindConfiguration(MemoryOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<MemoryOptions>, MemoryOptionsValidator>());
        services.AddHostedService<QuietTrim>();
        services.AddRelayTls();
        return services;
    }

    /// <summary>
    /// TLS in the process (<c>Relay:Tls</c>): Relay's certificate on the listeners <see cref="TlsListeners"/> names,
    /// checked at start-up and reloaded without a restart when its files change. Does nothing while no certificate is set.
    /// </summary>
    public static IServiceCollection AddRelayTls(this IServiceCollection services)
    {
        // Once per host (defaults and the ingress both ask): binding twice would add Relay:Tls:Ports' entries twice.
        if (services.Any(static d => d.ServiceType == typeof(ServerCertificate)))
        {
            return services;
        }

        services.AddOptions<TlsOptions>().BindConfiguration(TlsOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<TlsOptions>, TlsOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<TlsListeners>();
        services.AddSingleton<ServerCertificate>();
        services.AddHostedService(static sp => sp.GetRequiredService<ServerCertificate>());
        services.AddSingleton<IConfigureOptions<KestrelServerOptions>, KestrelTlsSetup>();
        return services;
    }

    /// <summary>Maps <c>/healthz</c> (the process is alive), <c>/readyz</c> (checks tagged <see cref="ReadyTag"/> pass) and <c>/metrics</c> (Prometheus text).</summary>
    public static IEndpointRouteBuilder MapRelayServiceDefaults(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapPrometheusScrapingEndpoint();
        endpoints.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = static _ => false });
        endpoints.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = static check => check.Tags.Contains(ReadyTag) });
        return endpoints;
    }
}
