using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Relay.Core.Diagnostics;
using Relay.Testing;

namespace Relay.Services.Tests.Tracing;

/// <summary>
/// One publish, one trace: the spans of every hop reach an OTLP/HTTP receiver running inside the test, all with the
/// trace id the publisher sent in its <c>traceparent</c> header.
/// </summary>
public abstract class TracingSpec : IAsyncLifetime
{
    private OtlpReceiver _receiver = null!;
    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        _receiver = await OtlpReceiver.StartAsync();
        var settings = new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = _receiver.Endpoint,
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
            ["OTEL_SERVICE_NAME"] = "relay-tracing-test",
        };
        ConfigureBus(settings);
        _server = await RelayServer.StartAsync(settings);
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
        using var http = new HttpClient { BaseAddress = _server.BaseAddress };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/channels/traced/messages") { Content = new StringContent("""{"data":"hello"}""", Encoding.UTF8, "application/json") };
        request.Headers.Add("traceparent", traceParent);
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var message = await subscriber.ReceiveMessageAsync();
        Assert.Equal("hello", message.GetProperty("data").GetString());

        // OTLP/HTTP bodies are protobuf: span names are raw UTF-8 and trace ids raw 16-byte fields, so the spans of
        // this trace are found without a protobuf library. Batches go out every 100 ms here.
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
        Assert.True(ours.AsSpan().IndexOf("relay-tracing-test"u8) >= 0, "the exporter's resource does not name the service");
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
