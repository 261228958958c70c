using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Relay.ServiceDefaults.Telemetry;

/// <summary>Says once, at start, that this service exports over OTLP and where to (the SDK itself stays silent).</summary>
internal sealed partial class OtlpExportLog(IConfiguration configuration, ILogger<OtlpExportLog> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        LogExporting(logger, configuration[RelayTelemetry.OtlpProtocolKey]!, configuration[RelayTelemetry.OtlpEndpointKey]!);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(EventId = 910, EventName = "OtlpExporting", Level = LogLevel.Information, Message = "Telemetry: exporting traces and metrics over OTLP ({Protocol}) to {Endpoint}")]
    private static partial void LogExporting(ILogger logger, string protocol, string endpoint);
}
