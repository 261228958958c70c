using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Relay.Core.Protocol;
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
    /// checked at start-up and reloaded without a restart when its files change; and mutual TLS between Relay's services
    /// (<c>Relay:InternalTls</c>, <see cref="InternalTls"/>). Does nothing while no certificate is set.
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
        services.TryAddSingleton(static sp => new TlsListeners(sp.GetRequiredService<IOptions<TlsOptions>>(), sp.GetRequiredService<IConfiguration>(), sp.GetRequiredService<InternalTls>()));
        services.AddSingleton<ServerCertificate>();
        services.AddHostedService(static sp => sp.GetRequiredService<ServerCertificate>());
        services.AddSingleton<IConfigureOptions<KestrelServerOptions>, KestrelTlsSetup>();

        // Mutual TLS between Relay's services (Relay:InternalTls): the certificate calls present, the CA they trust,
        // and the internal listener that requires a caller's certificate.
        services.AddOptions<InternalTlsOptions>().BindConfiguration(InternalTlsOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<InternalTlsOptions>, InternalTlsOptionsValidator>());
        services.TryAddSingleton<InternalTls>();
        services.AddHostedService(static sp => sp.GetRequiredService<InternalTls>());
        services.AddSingleton<IConfigureOptions<KestrelServerOptions>, InternalTlsListener>();
        services.AddSingleton<IStartupFilter, InternalTlsListener.Address>();
        return services;
    }

    /// <summary>
    /// Serves <paramref name="builder"/>'s endpoints to other Relay services only, once this service has an internal
    /// listener (<c>Relay:InternalTls:Port</c>): a request that did not come through it, with a certificate the internal
    /// CA issued, is answered 403 with 40300. Without an internal listener, nothing changes.
    /// </summary>
    public static TBuilder RequireRelayInternalCaller<TBuilder>(this TBuilder builder)
        where TBuilder : IEndpointConventionBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddEndpointFilter(static (context, next) =>
            context.HttpContext.RequestServices.GetService<InternalTls>() is not { } tls || tls.Admits(context.HttpContext.Connection)
                ? next(context)
                : ValueTask.FromResult<object?>(RelayResults.Error(ErrorCodes.Forbidden, $"this endpoint serves Relay's own services only: call it on the internal port ({InternalTlsOptions.SectionName}:Port) with a client certificate the internal CA issued")));
        return builder;
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
