using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Testing;

namespace Relay.Services.Tests.Sse;

public abstract class SseSpec : IAsyncLifetime
{
    private RelayServer _server = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        var settings = new Dictionary<string, string?> { ["Relay:Ingress:HeartbeatMs"] = "1000" };
        ConfigureBus(settings);
        _server = await StartServerAsync(settings);
        _http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    /// <summary>
    /// Lets a variant start the server beside what its bus needs (a Dapr sidecar, attached once the server listens);
    /// none means the server alone.
    /// </summary>
    protected virtual Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => RelayServer.StartAsync(settings);

    /// <summary>Lets a variant put the server on another bus; none means the in-memory bus.</summary>
    protected virtual void ConfigureBus(IDictionary<string, string?> settings)
    {
    }

    private Uri Stream(string query, string key = RelayServer.Key) => new(_server.BaseAddress, $"v1/sse?key={Uri.EscapeDataString(key)}&{query}");

    private async Task<long> PublishAsync(string channel, object data)
    {
        using var response = await _http.PostAsync($"v1/channels/{channel}/messages", new StringContent(JsonSerializer.Serialize(new { data }), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return body.RootElement.GetProperty("seqs")[0].GetInt64();
    }

    [Fact]
    public async Task Stream_OfTwoChannels_DeliversTheSameJsonAsTheWebSocketWithCursorIds()
    {
        await using var stream = await SseTestClient.OpenAsync(Stream("channel=sse:a&channel=sse:b"));
        Assert.Equal(HttpStatusCode.OK, stream.Status);
        Assert.Equal("text/event-stream", stream.ContentType);
        await stream.ReadAsync(); // the opening comment: the stream is live and subscribed

        await PublishAsync("sse:a", new { n = 1 });
        await PublishAsync("sse:b", new { n = 2 });
        // Order is per channel only (on a Redis Cluster the two channels' messages come from different masters).
        var events = new[] { await stream.ReadEventAsync(), await stream.ReadEventAsync() };
        var first = events.Single(static e => e.Json.GetProperty("channel").GetString() == "sse:a");
        var second = events.Single(static e => e.Json.GetProperty("channel").GetString() == "sse:b");
        Assert.Equal("message", first.Json.GetProperty("type").GetString());
        Assert.Equal("sse:a", first.Json.GetProperty("channel").GetString());
        Assert.Equal(1, first.Json.GetProperty("seq").GetInt64());
        Assert.Equal(2, second.Json.GetProperty("data").GetProperty("n").GetInt32());
        Assert.False(string.IsNullOrEmpty(first.Id));
        Assert.NotEqual(first.Id, second.Id);
    }

    [Fact]
    public async Task Stream_ResumedWithLastEventId_GetsEveryMissedMessageOnceInOrder()
    {
        string lastId;
        await using (var stream = await SseTestClient.OpenAsync(Stream("channel=resume:a&channel=resume:b")))
        {
            await stream.ReadAsync();
            await PublishAsync("resume:a", 1);
            await PublishAsync("resume:b", 2);
            await stream.ReadEventAsync();
            lastId = (await stream.ReadEventAsync()).Id!;
        }

        await PublishAsync("resume:a", 3);
        await PublishAsync("resume:b", 4);
        await PublishAsync("resume:a", 5);

        await using var resumed = await SseTestClient.OpenAsync(Stream("channel=resume:a&channel=resume:b"), lastId);
        await resumed.ReadAsync();
        await PublishAsync("resume:b", 6);
        var seen = new List<int>();
        for (var i = 0; i < 4; i++)
        {
            seen.Add((await resumed.ReadEventAsync()).Json.GetProperty("data").GetInt32());
        }

        Assert.Equal([3, 5], seen.Where(static n => n % 2 == 1));
        Assert.Equal([4, 6], seen.Where(static n => n % 2 == 0));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => resumed.ReadEventAsync(timeout: TimeSpan.FromMilliseconds(500)));
    }

    [Fact]
    public async Task Stream_WhenIdle_SendsHeartbeatComments()
    {
        await using var stream = await SseTestClient.OpenAsync(Stream("channel=idle"));
        await stream.ReadAsync();
        var beat = await stream.ReadAsync(TimeSpan.FromSeconds(5));
        Assert.Equal("heartbeat", beat.Comment);
    }

    [Fact]
    public async Task Stream_DeliversPresenceEvents()
    {
        await using var stream = await SseTestClient.OpenAsync(Stream("channel=sse:room"));
        await stream.ReadAsync();
        await using var member = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "pat"));
        await member.RequestAsync(new() { ["type"] = "presence", ["channel"] = "sse:room", ["action"] = "enter" });
        var presence = await stream.ReadEventAsync("presence");
        Assert.Equal("enter", presence.Json.GetProperty("action").GetString());
        Assert.Equal("pat", presence.Json.GetProperty("clientId").GetString());
    }

    [Theory]
    [InlineData("", HttpStatusCode.BadRequest, 40000)]
    [InlineData("channel=a%2F%2Fb", HttpStatusCode.BadRequest, 40002)]
    [InlineData("channel=a&lastEventId=garbage!", HttpStatusCode.BadRequest, 40000)]
    public async Task Stream_WithBadRequest_GetsErrorBody(string query, HttpStatusCode status, int code)
    {
        await using var stream = await SseTestClient.OpenAsync(Stream(query));
        Assert.Equal(status, stream.Status);
        using var body = JsonDocument.Parse(await stream.ReadBodyAsync());
        Assert.Equal(code, body.RootElement.GetProperty("error").GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Stream_WithoutCapability_Gets40300_AndWithoutCredentials40101()
    {
        await using (var denied = await SseTestClient.OpenAsync(Stream("channel=news", RelayServer.ChatOnlyKey)))
        {
            Assert.Equal(HttpStatusCode.Forbidden, denied.Status);
        }

        await using var anonymous = await SseTestClient.OpenAsync(new Uri(_server.BaseAddress, "v1/sse?channel=a"));
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.Status);
        using var body = JsonDocument.Parse(await anonymous.ReadBodyAsync());
        Assert.Equal(40101, body.RootElement.GetProperty("error").GetProperty("code").GetInt32());
    }

    /// <summary>JSON payloads as a publisher may lay them out, and the compact form every subscriber gets.</summary>
    private static readonly (string Sent, string Relayed)[] SpacedPayloads =
    [
        ("{\"a\":\n\n1}", "{\"a\":1}"),
        ("{\"a\":\r\n\r\n2}", "{\"a\":2}"),
        ("{\"a\":\r\r3}", "{\"a\":3}"),
        ("[ 4 ,\n\t5 ]", "[4,5]"),
        ("{ \"s\" : \"two  spaces, escaped LF\\n, CRLF\\r\\n, CR\\r\" ,\n\n \"t\":\"tab\\there\" }", "{\"s\":\"two  spaces, escaped LF\\n, CRLF\\r\\n, CR\\r\",\"t\":\"tab\\there\"}"),
        ("\"an escaped quote\\\"  then spaces\"", "\"an escaped quote\\\"  then spaces\""),
    ];

    [Fact]
    public async Task PayloadWithLineBreaksBetweenTokens_ReachesSseAndWebSocketSubscribersAsCompactJson()
    {
        const string channel = "sse:spaced";
        await using var stream = await SseTestClient.OpenAsync(Stream("channel=" + channel));
        await stream.ReadAsync();
        await using var subscriber = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
        await using var publisher = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));

        // Every way in: one WebSocket publish, a WebSocket batch, one HTTP message, an HTTP batch.
        foreach (var (sent, _) in SpacedPayloads)
        {
            await publisher.SendTextAsync($"{{\"type\":\"publish\",\"channel\":\"{channel}\",\n\"data\":\r\n{sent}\n}}");
        }

        await publisher.SendTextAsync("[\n" + string.Join(",\r\n", SpacedPayloads.Select(p => $"{{\"type\":\"publish\",\"channel\":\"{channel}\",\"data\":{p.Sent}}}")) + "\n]");

        // A ping is answered after the publishes before it: the HTTP ones come next in seq order.
        await publisher.RequestAsync(new() { ["type"] = "ping" });
        foreach (var (sent, _) in SpacedPayloads)
        {
            await PostRawAsync(channel, $"{{\"data\":\n{sent}\n}}");
        }

        await PostRawAsync(channel, "[" + string.Join(",\n\n", SpacedPayloads.Select(static p => $"{{ \"data\" :\r\n{p.Sent} }}")) + "]");

        // Compared as sets: only seq order is promised, not that pipelined publishes keep their send order.
        var expected = Enumerable.Repeat(SpacedPayloads.Select(static p => p.Relayed), 4).SelectMany(static p => p).Order(StringComparer.Ordinal).ToList();
        var overSse = new List<string>();
        var overWebSocket = new List<string>();
        foreach (var _ in expected)
        {
            var sse = await stream.ReadEventAsync();
            Assert.DoesNotContain('\n', sse.Data!);
            overSse.Add(sse.Json.GetProperty("data").GetRawText());
            overWebSocket.Add((await subscriber.ReceiveMessageAsync()).GetProperty("data").GetRawText());
        }

        Assert.Equal(expected, overSse.Order(StringComparer.Ordinal));
        Assert.Equal(expected, overWebSocket.Order(StringComparer.Ordinal));
    }

    private async Task PostRawAsync(string channel, string body)
    {
        using var response = await _http.PostAsync($"v1/channels/{channel}/messages", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
    }

    [Fact]
    public async Task MessageWithLineBreaksThatSkippedIngress_IsSentAsOneDataFieldPerLine()
    {
        // Straight onto the bus, as a message stored by an older node or taken in by another protocol would come.
        const string channel = "sse:unscrubbed";
        await using var stream = await SseTestClient.OpenAsync(Stream("channel=" + channel));
        await stream.ReadAsync();
        var bus = _server.Services.GetRequiredService<IRelayBus>();
        var item = new PublishItem(null, "{\"a\":\r\n\r\n1,\n\"b\":\r2 ,\"c\":\"x\\ny\"}"u8.ToArray(), DataIsJson: true, Id: null);
        using var cts = new CancellationTokenSource(TestSocket.DefaultTimeout);
        Assert.IsType<PublishReply>(await bus.SendToRoutingAsync(new PublishRequest(RelayServer.AppId, channel, [item], ClientId: null, TraceParent: null), cts.Token));

        var data = (await stream.ReadEventAsync()).Json.GetProperty("data");
        Assert.Equal(1, data.GetProperty("a").GetInt32());
        Assert.Equal(2, data.GetProperty("b").GetInt32());
        Assert.Equal("x\ny", data.GetProperty("c").GetString());
    }
}
