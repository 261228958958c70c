using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Http;

/// <summary>The ingress meter as Prometheus scrapes it from <c>/metrics</c>: each test runs its own server, so counts are exact.</summary>
public sealed class MetricsTests
{
    private static async Task<RelayServer> StartAsync(bool ownTransport = true, Dictionary<string, string?>? settings = null)
    {
        settings ??= [];
        settings["Relay:Ingress:OwnTransport"] = ownTransport ? "true" : "false";
        return await RelayServer.StartAsync(settings);
    }

    private static HttpClient Client(RelayServer server)
    {
        var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        return http;
    }

    private static async Task PublishAsync(HttpClient http, string channel, int count, string payload = "1")
    {
        var body = "[" + string.Join(",", Enumerable.Repeat($$"""{"data":{{payload}}}""", count)) + "]";
        using var response = await http.PostAsync($"v1/channels/{channel}/messages", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
    }

    /// <summary>
    /// Every sample of a scrape by series (<c>name{labels}</c>, or <c>name</c> alone without labels), and the raw text for
    /// the <c># TYPE</c> lines. A series without labels may be written <c>name{}</c> (the OpenTelemetry exporter does) or
    /// <c>name</c>; Prometheus reads both as the same series, and so does this.
    /// </summary>
    private static async Task<(Dictionary<string, double> Samples, string Text)> ScrapeAsync(HttpClient http)
    {
        using var response = await http.GetAsync("metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length > 0 && line[0] != '#')
            {
                var space = line.LastIndexOf(' ');
                var series = line[..space];
                samples[series.EndsWith("{}", StringComparison.Ordinal) ? series[..^2] : series] = double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
            }
        }

        return (samples, text);
    }

    private static async Task UntilAsync(HttpClient http, Func<Dictionary<string, double>, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        var (samples, text) = await ScrapeAsync(http);
        while (!condition(samples))
        {
            Assert.True(DateTime.UtcNow < deadline, $"gave up waiting for {what}; last scrape:\n{text}");
            await Task.Delay(50);
            (samples, text) = await ScrapeAsync(http);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task WebSocketSubscriber_AfterThreePublishes_EveryIngressCounterMoved(bool ownTransport)
    {
        await using var server = await StartAsync(ownTransport);
        using var http = Client(server);
        await using var socket = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "metered" });

        await PublishAsync(http, "metered", 3);
        for (var i = 0; i < 3; i++)
        {
            await socket.ReceiveMessageAsync();
        }

        var (samples, text) = await ScrapeAsync(http);
        Assert.Contains("# TYPE relay_ingress_connections gauge\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE relay_ingress_messages_in_total counter\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE relay_ingress_deliveries_total counter\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE relay_ingress_messages_out_total counter\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE relay_ingress_queued_messages gauge\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE relay_ingress_publish_to_deliver_seconds histogram\n", text, StringComparison.Ordinal);

        Assert.Equal(1, samples["relay_ingress_connections"]);
        Assert.Equal(3, samples["relay_ingress_messages_in_total"]);
        Assert.Equal(3, samples["relay_ingress_deliveries_total"]);

        // The connected frame, the subscribe reply and the three messages.
        Assert.Equal(5, samples["relay_ingress_messages_out_total"]);
        Assert.Equal(0, samples["relay_ingress_queued_messages"]);
        Assert.Equal(0, samples["relay_ingress_slow_consumer_disconnects_total"]);
        Assert.Equal(3, samples["relay_ingress_publish_to_deliver_seconds_count"]);
        Assert.Equal(3, samples["relay_ingress_publish_to_deliver_seconds_bucket{le=\"+Inf\"}"]);
    }

    [Fact]
    public async Task SseStream_MessagesCountAsDeliveriesAndMessagesOut()
    {
        await using var server = await StartAsync();
        using var http = Client(server);
        await using var stream = await SseTestClient.OpenAsync(new Uri(server.BaseAddress, $"v1/sse?key={Uri.EscapeDataString(RelayServer.Key)}&channel=sse:metered"));

        await PublishAsync(http, "sse:metered", 2);
        await stream.ReadEventAsync();
        await stream.ReadEventAsync();

        var (samples, _) = await ScrapeAsync(http);
        Assert.Equal(1, samples["relay_ingress_connections"]);
        Assert.Equal(2, samples["relay_ingress_deliveries_total"]);
        Assert.Equal(2, samples["relay_ingress_messages_out_total"]);
        Assert.Equal(0, samples["relay_ingress_queued_messages"]);
    }

    [Fact]
    public async Task Scrape_AfterARequest_ShowsAspNetCoreAndRuntimeMetricsBesideRelays()
    {
        await using var server = await StartAsync();
        using var http = Client(server);
        await PublishAsync(http, "metered", 1);

        // The request's duration is recorded when it ends, just after the client has the response: wait for it.
        await UntilAsync(http, static s => s.Keys.Any(static k => k.StartsWith("http_server_request_duration_seconds_count{", StringComparison.Ordinal) && k.Contains("http_request_method=\"POST\"", StringComparison.Ordinal)), "the publish request in http_server_request_duration_seconds");
        var (samples, text) = await ScrapeAsync(http);
        Assert.Contains("# TYPE http_server_request_duration_seconds histogram\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE kestrel_active_connections gauge\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE dotnet_gc_heap_total_allocated_bytes_total counter\n", text, StringComparison.Ordinal);
        Assert.True(samples["dotnet_process_cpu_count"] >= 1);
        Assert.Equal(1, samples["relay_ingress_messages_in_total"]);
    }

    [Fact]
    public async Task TwoServersInOneProcess_EachScrapeCountsItsOwnServerOnly()
    {
        await using var first = await StartAsync();
        await using var second = await StartAsync();
        using var firstHttp = Client(first);
        using var secondHttp = Client(second);
        await using var socket = await TestSocket.ConnectAsync(first.RealtimeUriWithKey(RelayServer.Key));

        await PublishAsync(firstHttp, "metered", 3);
        await PublishAsync(secondHttp, "metered", 1);

        var (firstSamples, _) = await ScrapeAsync(firstHttp);
        var (secondSamples, _) = await ScrapeAsync(secondHttp);
        Assert.Equal((3, 1), (firstSamples["relay_ingress_messages_in_total"], secondSamples["relay_ingress_messages_in_total"]));
        Assert.Equal((1, 0), (firstSamples["relay_ingress_connections"], secondSamples["relay_ingress_connections"]));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task StalledReader_BacklogShowsInQueuedMessages_AndLeavesWithTheConnection(bool ownTransport)
    {
        await using var server = await StartAsync(ownTransport, new()
        {
            // Room for the whole backlog (no slow-consumer cut), and a quick close once the reader is gone.
            ["Relay:Ingress:SendQueueBytes"] = "268435456",
            ["Relay:Ingress:CloseTimeout"] = "00:00:01",
        });
        using var http = Client(server);

        // Never read after the subscribe: the server feels it quickly.
        using var reader = await StalledReader.SubscribeAsync(server.RealtimeUriWithKey(RelayServer.Key), "backlog");
        var stalled = reader.Socket;

        var payload = JsonSerializer.Serialize(new string('p', 1000));
        var queued = 0d;
        for (var i = 0; i < 200 && queued == 0; i++)
        {
            await PublishAsync(http, "backlog", 100, payload);
            queued = (await ScrapeAsync(http)).Samples["relay_ingress_queued_messages"];
        }

        Assert.True(queued > 0, "no backlog formed after 20 MB to a reader that never reads");
        var (samples, _) = await ScrapeAsync(http);
        Assert.True(samples["relay_ingress_messages_out_total"] > 0);
        Assert.Equal(0, samples["relay_ingress_slow_consumer_disconnects_total"]);

        // The reader goes away with its backlog unsent: the frames leave the gauge with the connection.
        stalled.Abort();
        await UntilAsync(http, static s => s["relay_ingress_connections"] == 0 && s["relay_ingress_queued_messages"] == 0, "the closed connection's backlog to leave the gauge");
    }
}
