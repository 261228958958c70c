using System.Collections.Concurrent;
using Microsoft.AspNetCore.Http;

namespace Relay.Testing;

/// <summary>
/// An OTLP/HTTP receiver inside the test (<c>POST /v1/traces</c> and <c>/v1/metrics</c> on a <see cref="LoopbackServer"/>):
/// it keeps every export body as sent. Bodies are protobuf; span and metric names, service names and raw 16-byte trace
/// ids can be found in them as bytes, so no protobuf library is needed.
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private LoopbackServer? _server;

    private OtlpReceiver()
    {
    }

    /// <summary>The value for <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (<c>http://127.0.0.1:PORT</c>).</summary>
    public string Endpoint { get; private set; } = string.Empty;

    /// <summary>Every trace export body received so far, in order.</summary>
    public ConcurrentQueue<byte[]> Exports { get; } = new();

    /// <summary>Every metrics export body (<c>POST /v1/metrics</c>) received so far, in order.</summary>
    public ConcurrentQueue<byte[]> MetricExports { get; } = new();

    public static async Task<OtlpReceiver> StartAsync()
    {
        var receiver = new OtlpReceiver();
        receiver._server = await LoopbackServer.StartAsync(receiver.ReceiveAsync).ConfigureAwait(false);
        receiver.Endpoint = receiver._server.Url.ToString().TrimEnd('/');
        return receiver;
    }

    public ValueTask DisposeAsync() => _server?.DisposeAsync() ?? ValueTask.CompletedTask;

    private async Task ReceiveAsync(HttpContext context)
    {
        var exports = HttpMethods.IsPost(context.Request.Method)
            ? context.Request.Path.Value switch
            {
                "/v1/traces" => Exports,
                "/v1/metrics" => MetricExports,
                _ => null,
            }
            : null;
        if (exports is null)
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }

        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body).ConfigureAwait(false);
        exports.Enqueue(body.ToArray());
    }
}
