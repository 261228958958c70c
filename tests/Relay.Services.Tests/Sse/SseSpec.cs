using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
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
        _server = await RelayServer.StartAsync(settings);
        _http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

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
        var first = await stream.ReadEventAsync();
        var second = await stream.ReadEventAsync();
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
}
