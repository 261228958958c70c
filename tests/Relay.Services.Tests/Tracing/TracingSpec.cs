using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Relay.Core.Diagnostics;
using Relay.Testing;

namespace Relay.Services.Tests.Tracing;

/// <summary>
/// One publish, one trace: the spans of every hop reach an OTLP/HTTP receiver running inside the test, all with the
/// trace id the publisher sent in its <c>traceparent</c> header (HTTP) or field (a realtime <c>publish</c>).
/// </summary>
public abstract class TracingSpec : IAsyncLifetime
{
    private OtlpReceiver _receiver = null!;
    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        _receiver = await OtlpReceiver.StartAsync();
        _server = await StartServerAsync(ownTransport: true);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _receiver.DisposeAsync();
    }

    /// <summary>Lets a variant put the server on another bus; none means the in-memory bus.</summary>
    protected virtual void ConfigureBus(IDictionary<string, string?> settings)
    {
    }

    [Fact]
    public async Task OnePublish_ProducesOneTraceWithASpanForEveryHop()
    {
        await using var subscriber = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "traced" });

        var traceId = RandomNumberGenerator.GetBytes(16);
        var traceParent = $"00-{Convert.ToHexStringLower(traceId)}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}-01";

        // The server's HttpClient instrumentation sees this process's requests too: without a propagator, this client
        // sends its traceparent as a browser would, untouched.
        using var http = new HttpClient(new SocketsHttpHandler { ActivityHeadersPropagator = null }) { BaseAddress = _server.BaseAddress };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/channels/traced/messages") { Content = new StringContent("""{"data":"hello"}""", Encoding.UTF8, "application/json") };
        request.Headers.Add("traceparent", traceParent);
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var message = await subscriber.ReceiveMessageAsync();
        Assert.Equal("hello", message.GetProperty("data").GetString());

        await AssertEveryHopAsync(traceId);
        Assert.Contains(_receiver.Exports, body => body.AsSpan().IndexOf(traceId) >= 0 && body.AsSpan().IndexOf("relay-tracing-test"u8) >= 0);
        await AssertBusSpansAsync(traceId);
    }

    /// <summary>Checks the spans a variant's bus adds to a publish's trace (none for the in-memory bus).</summary>
    protected virtual Task AssertBusSpansAsync(byte[] traceId) => Task.CompletedTask;

    /// <summary>Waits (at most 15 s) for an exported batch that carries <paramref name="traceId"/> and every one of <paramref name="words"/>.</summary>
    protected async Task<bool> ExportedWithAsync(byte[] traceId, params string[] words)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (DateTime.UtcNow < deadline)
        {
            if (_receiver.Exports.Any(body => body.AsSpan().IndexOf(traceId) >= 0 && words.All(word => body.AsSpan().IndexOf(Encoding.UTF8.GetBytes(word)) >= 0)))
            {
                return true;
            }

            await Task.Delay(100);
        }

        return false;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RealtimePublish_WithTraceparent_ProducesThatTraceThroughEveryHop(bool ownTransport)
    {
        // Own transport: the connection is Relay's own; otherwise it is an ASP.NET Core request whose span stays current
        // for the connection's life, and the frame's traceparent must win over it.
        await using var owned = ownTransport ? null : await StartServerAsync(ownTransport: false);
        var server = owned ?? _server;
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "traced-ws" });
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));

        var traceId = RandomNumberGenerator.GetBytes(16);
        var reply = await publisher.RequestAsync(new()
        {
            ["type"] = "publish",
            ["channel"] = "traced-ws",
            ["data"] = "hello",
            ["traceparent"] = $"00-{Convert.ToHexStringLower(traceId)}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}-01",
        });
        Assert.Equal("ok", reply.GetProperty("type").GetString());
        Assert.Equal("hello", (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetString());

        await AssertEveryHopAsync(traceId);
    }

    [Fact]
    public async Task RealtimePublish_WithInvalidTraceparent_IsPublishedAndTracedAsANewTrace()
    {
        await using var subscriber = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "traced-invalid" });
        await using var publisher = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));

        // Malformed, an all-zero trace id (invalid in W3C), and not a string: each is ignored like an unknown field.
        object[] invalid = ["00-not-a-trace-01", "00-00000000000000000000000000000000-0123456789abcdef-01", 42];
        foreach (var traceParent in invalid)
        {
            var reply = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "traced-invalid", ["data"] = "hello", ["traceparent"] = traceParent });
            Assert.Equal("ok", reply.GetProperty("type").GetString());
            Assert.Equal("hello", (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetString());
        }

        // And still traced (each in a new trace): their spans, tagged with the channel, reach the receiver.
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (Occurrences([.. _receiver.Exports.SelectMany(body => body)], "traced-invalid"u8) < invalid.Length && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }

        Assert.True(Occurrences([.. _receiver.Exports.SelectMany(body => body)], "traced-invalid"u8) >= invalid.Length, "the publishes with an invalid traceparent were not traced");
    }

    [Fact]
    public async Task OtlpExport_CarriesRelayMetrics()
    {
        using var http = new HttpClient { BaseAddress = _server.BaseAddress };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var response = await http.PostAsync("v1/channels/metered/messages", new StringContent("""{"data":1}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);

        // Exported every 200 ms here (OTEL_METRIC_EXPORT_INTERVAL); metric names are raw UTF-8 in the protobuf.
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (!_receiver.MetricExports.Any(body => body.AsSpan().IndexOf("relay.ingress.messages_in"u8) >= 0) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }

        Assert.Contains(_receiver.MetricExports, body => body.AsSpan().IndexOf("relay.ingress.messages_in"u8) >= 0);
        Assert.Contains(_receiver.MetricExports, body => body.AsSpan().IndexOf("relay-tracing-test"u8) >= 0);
    }

    private async Task<RelayServer> StartServerAsync(bool ownTransport)
    {
        var settings = new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = _receiver.Endpoint,
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "200",
            ["OTEL_SERVICE_NAME"] = "relay-tracing-test",
            ["Relay:Ingress:OwnTransport"] = ownTransport ? "true" : "false",
        };
        ConfigureBus(settings);
        return await RelayServer.StartAsync(settings);
    }

    /// <summary>
    /// Waits until the spans of every hop carry <paramref name="traceId"/>, then asserts they do. OTLP/HTTP bodies are
    /// protobuf: span names are raw UTF-8 and trace ids raw 16-byte fields, so the spans of a trace are found without a
    /// protobuf library. Batches go out every 100 ms here.
    /// </summary>
    private async Task AssertEveryHopAsync(byte[] traceId)
    {
        string[] hops = [RelayTracing.IngressReceive, RelayTracing.RoutingSequence, RelayTracing.FanOutDispatch, RelayTracing.IngressDeliver];
        var deadline = DateTime.UtcNow.AddSeconds(15);
        byte[] ours = [];
        while (DateTime.UtcNow < deadline)
        {
            ours = [.. _receiver.Exports.Where(body => body.AsSpan().IndexOf(traceId) >= 0).SelectMany(body => body)];
            if (hops.All(hop => ours.AsSpan().IndexOf(Encoding.UTF8.GetBytes(hop)) >= 0) && Occurrences(ours, traceId) >= hops.Length)
            {
                break;
            }

            await Task.Delay(100);
        }

        foreach (var hop in hops)
        {
            Assert.True(ours.AsSpan().IndexOf(Encoding.UTF8.GetBytes(hop)) >= 0, $"no '{hop}' span in the exported batches carrying trace {Convert.ToHexStringLower(traceId)}");
        }

        Assert.True(Occurrences(ours, traceId) >= hops.Length, $"the trace id appears {Occurrences(ours, traceId)} times: fewer spans than hops");
    }

    private static int Occurrences(ReadOnlySpan<byte> data, ReadOnlySpan<byte> value)
    {
        var count = 0;
        for (var at = data.IndexOf(value); at >= 0; at = data.IndexOf(value))
        {
            count++;
            data = data[(at + value.Length)..];
        }

        return count;
    }
}
