using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Relay.Core.Diagnostics;

namespace Relay.ServiceDefaults.Tracing;

/// <summary>
/// Exports Relay's spans over OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (environment or any other
/// configuration source), and does nothing otherwise, so an unconfigured service pays nothing for tracing. The
/// protocol is <c>OTEL_EXPORTER_OTLP_PROTOCOL</c> (<c>http/protobuf</c> by default, or <c>grpc</c>); the service
/// name is <c>OTEL_SERVICE_NAME</c> or the host's application name; <c>OTEL_BSP_SCHEDULE_DELAY</c> (ms) sets how
/// often batches go out.
/// </summary>
internal sealed partial class OtlpTracing(IConfiguration configuration, IHostEnvironment environment, ILogger<OtlpTracing> logger) : IHostedService, IDisposable
{
    private TracerProvider? _provider;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var endpoint = configuration["OTEL_EXPORTER_OTLP_ENDPOINT"];
        if (string.IsNullOrWhiteSpace(endpoint))
        {
            return Task.CompletedTask;
        }

        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var baseUri))
        {
            throw new InvalidOperationException($"OTEL_EXPORTER_OTLP_ENDPOINT is '{endpoint}', not an absolute URI; set it like http://collector:4318");
        }

        var grpc = string.Equals(configuration["OTEL_EXPORTER_OTLP_PROTOCOL"], "grpc", StringComparison.OrdinalIgnoreCase);
        var delay = int.TryParse(configuration["OTEL_BSP_SCHEDULE_DELAY"], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms) && ms > 0 ? ms : 5000;
        var service = configuration["OTEL_SERVICE_NAME"] is { Length: > 0 } name ? name : environment.ApplicationName;
        _provider = Sdk.CreateTracerProviderBuilder()
            .SetResourceBuilder(ResourceBuilder.CreateDefault().AddService(service))
            .AddSource(RelayTracing.SourceName)
            .AddOtlpExporter(options =>
            {
                options.Protocol = grpc ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;

                // Given explicitly, the endpoint is used as is: OTLP/HTTP wants the signal's path on the base address.
                options.Endpoint = grpc ? baseUri : new Uri(baseUri, baseUri.AbsolutePath.TrimEnd('/') + "/v1/traces");
                options.BatchExportProcessorOptions.ScheduledDelayMilliseconds = delay;
            })
            .Build();
        LogExporting(logger, service, options: grpc ? "grpc" : "http/protobuf", endpoint);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        // Sends what is still batched before the host goes.
        _provider?.ForceFlush(2000);
        return Task.CompletedTask;
    }

    public void Dispose() => _provider?.Dispose();

    [LoggerMessage(Level = LogLevel.Information, Message = "Tracing: exporting spans of service {Service} over OTLP ({Options}) to {Endpoint}")]
    private static partial void LogExporting(ILogger logger, string service, string options, string endpoint);
}
