using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Relay.ServiceDefaults.Memory;
using Relay.ServiceDefaults.Metrics;

namespace Relay.ServiceDefaults;

/// <summary>What every Relay service host adds: health checks, the clock, and the shared endpoints.</summary>
public static class ServiceDefaultsExtensions
{
    /// <summary>The tag of health checks that gate readiness (<c>/readyz</c>).</summary>
    public const string ReadyTag = "ready";

    /// <summary>Adds health checks, the Prometheus collector, OTLP trace export (when configured), the quiet-time heap trim and <see cref="TimeProvider"/>.</summary>
    public static IServiceCollection AddRelayServiceDefaults(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.AddHealthChecks();
        services.AddMetrics();
        services.TryAddSingleton<PrometheusMetrics>();
        services.AddHostedService<Tracing.OtlpTracing>();
        services.AddOptions<MemoryOptions>().BindConfiguration(MemoryOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<MemoryOptions>, MemoryOptionsValidator>());
        services.AddHostedService<QuietTrim>();
        return services;
    }

    /// <summary>Maps <c>/healthz</c> (the process is alive), <c>/readyz</c> (checks tagged <see cref="ReadyTag"/> pass) and <c>/metrics</c> (Prometheus text).</summary>
    public static IEndpointRouteBuilder MapRelayServiceDefaults(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        // Created now, so counters are collected from the start rather than from the first scrape.
        _ = endpoints.ServiceProvider.GetRequiredService<PrometheusMetrics>();
        endpoints.MapGet("/metrics", static (PrometheusMetrics metrics) => Results.Text(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8"));
        endpoints.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = static _ => false });
        endpoints.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = static check => check.Tags.Contains(ReadyTag) });
        return endpoints;
    }
}
