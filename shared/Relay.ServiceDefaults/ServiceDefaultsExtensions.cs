using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Relay.ServiceDefaults;

/// <summary>What every Relay service host adds: health checks, the clock, and the shared endpoints.</summary>
public static class ServiceDefaultsExtensions
{
    /// <summary>The tag of health checks that gate readiness (<c>/readyz</c>).</summary>
    public const string ReadyTag = "ready";

    /// <summary>Adds health checks and <see cref="TimeProvider"/>.</summary>
    public static IServiceCollection AddRelayServiceDefaults(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.AddHealthChecks();
        return services;
    }

    /// <summary>Maps <c>/healthz</c> (the process is alive) and <c>/readyz</c> (checks tagged <see cref="ReadyTag"/> pass).</summary>
    public static IEndpointRouteBuilder MapRelayServiceDefaults(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = static _ => false });
        endpoints.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = static check => check.Tags.Contains(ReadyTag) });
        return endpoints;
    }
}
