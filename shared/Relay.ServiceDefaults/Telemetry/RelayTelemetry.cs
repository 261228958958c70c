using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Relay.Core.Diagnostics;

namespace Relay.ServiceDefaults.Telemetry;

/// <summary>
/// OpenTelemetry the standard way (<c>AddOpenTelemetry().WithMetrics().WithTracing()</c>): Relay's meters next to
/// ASP.NET Core's, HttpClient's and the runtime's, scraped at <c>/metrics</c> by the Prometheus exporter; with
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> set, Relay's spans (and ASP.NET Core's and HttpClient's) and the metrics also go
/// out over OTLP, configured by the standard <c>OTEL_*</c> variables.
/// </summary>
internal static class RelayTelemetry
{
    /// <summary>Relay's meters (<c>Relay.Ingress</c>, <c>Relay.FanOut</c>, <c>Relay.Memory</c>).</summary>
    public const string RelayMeters = "Relay.*";

    /// <summary>The standard variable whose presence turns tracing and OTLP export on.</summary>
    public const string OtlpEndpointKey = "OTEL_EXPORTER_OTLP_ENDPOINT";

    /// <summary>The standard variable that picks <c>grpc</c> or <c>http/protobuf</c>.</summary>
    public const string OtlpProtocolKey = "OTEL_EXPORTER_OTLP_PROTOCOL";

    /// <summary>The protocol when <see cref="OtlpProtocolKey"/> is unset.</summary>
    public const string DefaultOtlpProtocol = "http/protobuf";

    public static void AddRelayTelemetry(this IHostApplicationBuilder builder)
    {
        var configuration = builder.Configuration;
        var telemetry = builder.Services.AddOpenTelemetry();
        if (string.IsNullOrWhiteSpace(configuration["OTEL_SERVICE_NAME"]) && configuration["OTEL_RESOURCE_ATTRIBUTES"]?.Contains("service.name=", StringComparison.Ordinal) != true)
        {
            // Left to the SDK, every service would be "unknown_service"; the host's name tells them apart.
            telemetry.ConfigureResource(resource => resource.AddService(builder.Environment.ApplicationName));
        }

        telemetry.WithMetrics(static metrics => metrics
            .AddMeter(RelayMeters)
            .AddAspNetCoreInstrumentation()
            .AddHttpClientInstrumentation()
            .AddRuntimeInstrumentation()
            .AddPrometheusExporter(static prometheus =>
            {
                // The relay_* series keep the labels they had (no otel_scope_name/version on every sample).
                prometheus.ScopeInfoEnabled = false;

                // Each scrape collects afresh: reading Relay's counters is cheap, and a cached reply (300 ms by default)
                // would show a scrape that follows an event the counts from before it.
                prometheus.ScrapeResponseCacheDurationMilliseconds = 0;
            }));
        builder.Services.ConfigureOpenTelemetryMeterProvider(static (services, metrics) =>
            metrics.AddView(new HostMeterView(services.GetRequiredService<IMeterFactory>()).Select));

        var endpoint = configuration[OtlpEndpointKey];
        if (string.IsNullOrWhiteSpace(endpoint))
        {
            // Nothing to export to: no tracer provider, so nothing listens to Relay's ActivitySource and starting a span
            // stays a null check on the message path (the allocation budget tests run this way).
            return;
        }

        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out _))
        {
            throw new InvalidOperationException($"{OtlpEndpointKey} is '{endpoint}', not an absolute URI; set it like http://collector:4318 (or unset it to export nothing)");
        }

        if (string.IsNullOrWhiteSpace(configuration[OtlpProtocolKey]))
        {
            // The OTLP specification's default; the .NET SDK's own is grpc, which most collectors' HTTP ports refuse.
            configuration.AddInMemoryCollection([new(OtlpProtocolKey, DefaultOtlpProtocol)]);
        }

        telemetry.WithTracing(static tracing => tracing
            .AddSource(RelayTracing.SourceName)
            .AddAspNetCoreInstrumentation(static aspNetCore => aspNetCore.Filter = static context => !IsProbeOrScrape(context.Request.Path))
            .AddHttpClientInstrumentation());

        // StackExchange.Redis: the Redis bus adds its instrumentation to this tracing itself (AddRelayBus().AddRedis()), with the
        // process's one multiplexer.
        telemetry.UseOtlpExporter();
        builder.Services.AddHostedService<OtlpExportLog>();
    }

    // Health probes and scrapes come every few seconds and say nothing about a message's path.
    private static bool IsProbeOrScrape(PathString path) =>
        path.StartsWithSegments("/metrics") || path.StartsWithSegments("/healthz") || path.StartsWithSegments("/readyz");
}
