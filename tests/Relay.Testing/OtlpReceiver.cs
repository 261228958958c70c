using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Relay.Testing;

/// <summary>
/// An OTLP/HTTP receiver inside the test (<c>POST /v1/traces</c> and <c>/v1/metrics</c> on a free loopback port): it
/// keeps every export body as sent. Bodies are protobuf; span and metric names, service names and raw 16-byte trace ids
/// can be found in them as bytes, so no protobuf library is needed.
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;

    private OtlpReceiver(WebApplication app, string endpoint)
    {
        _app = app;
        Endpoint = endpoint;
    }

    /// <summary>The value for <c>OTEL_EXPORTER_OTLP_ENDPOINT</c>.</summary>
    public string Endpoint { get; }

    /// <summary>Every trace export body received so far, in order.</summary>
    public ConcurrentQueue<byte[]> Exports { get; } = new();

    /// <summary>Every metrics export body (<c>POST /v1/metrics</c>) received so far, in order.</summary>
    public ConcurrentQueue<byte[]> MetricExports { get; } = new();

    public static async Task<OtlpReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        OtlpReceiver? receiver = null;
        app.MapPost("/v1/traces", async (HttpRequest request) =>
        {
            receiver!.Exports.Enqueue(await ReadAsync(request).ConfigureAwait(false));
            return Results.Ok();
        });
        app.MapPost("/v1/metrics", async (HttpRequest request) =>
        {
            receiver!.MetricExports.Enqueue(await ReadAsync(request).ConfigureAwait(false));
            return Results.Ok();
        });
        await app.StartAsync().ConfigureAwait(false);
        var endpoint = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        receiver = new OtlpReceiver(app, endpoint);
        return receiver;
    }

    public ValueTask DisposeAsync() => _app.DisposeAsync();

    private static async Task<byte[]> ReadAsync(HttpRequest request)
    {
        using var body = new MemoryStream();
        await request.Body.CopyToAsync(body).ConfigureAwait(false);
        return body.ToArray();
    }
}
