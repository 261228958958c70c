using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Relay.Ingress;
using Relay.Testing;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// The engine (Redis) goes away: requests that need it get the protocol's 50300 (HTTP 503) within the request timeout,
/// connections still close cleanly, the server stays up, and when Redis is back everything works again without a restart.
/// </summary>
public sealed class EngineDownTests(RedisBusFixture redis) : IClassFixture<RedisBusFixture>, IAsyncLifetime
{
    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        var settings = ServerFixture.Settings();
        redis.AddTo(settings);
        settings["Relay:Redis:RequestTimeout"] = "00:00:03";
        settings["Relay:Redis:CommandTimeout"] = "00:00:01";
        _server = await RelayServer.StartAsync(settings);
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task WithRedisDown_RequestsGet50300_AndWithRedisBack_TheyWorkAgain()
    {
        await using var client = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await client.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "engine" })).GetProperty("type").GetString());
        Assert.Equal("ok", (await client.RequestAsync(new() { ["type"] = "publish", ["channel"] = "engine", ["data"] = 1 })).GetProperty("type").GetString());
        Assert.Equal(1, (await client.ReceiveMessageAsync()).GetProperty("seq").GetInt64());

        var leaving = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await leaving.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "engine" })).GetProperty("type").GetString());
        var node = _server.Services.GetRequiredService<IngressNode>();
        Assert.Equal(2, node.ConnectionCount);

        redis.Redis.Kill();

        // A client leaving while the engine is down closes all the way (its unsubscribe cannot fail for Redis).
        await leaving.DisposeAsync();
        var closedBy = DateTime.UtcNow.AddSeconds(10);
        while (node.ConnectionCount != 1 || node.Subscriptions.CountOf(RelayServer.AppId, "engine") != 1)
        {
            Assert.True(DateTime.UtcNow < closedBy, $"the client that left is still held: {node.ConnectionCount} connections, {node.Subscriptions.CountOf(RelayServer.AppId, "engine")} subscribers of 'engine'");
            await Task.Delay(50);
        }

        var publish = await client.RequestAsync(new() { ["type"] = "publish", ["channel"] = "engine", ["data"] = 2 });
        Assert.Equal(("error", 50300), (publish.GetProperty("type").GetString(), publish.GetProperty("code").GetInt32()));
        var subscribe = await client.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "engine:other" });
        Assert.Equal(("error", 50300), (subscribe.GetProperty("type").GetString(), subscribe.GetProperty("code").GetInt32()));

        using var http = new HttpClient { BaseAddress = _server.BaseAddress };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using (var body = new StringContent("""{"data":3}""", Encoding.UTF8, "application/json"))
        using (var response = await http.PostAsync(new Uri("v1/channels/engine/messages", UriKind.Relative), body))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal(50300, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetInt32());
        }

        // Still serving: a ping is answered on the same connection.
        Assert.Equal("pong", (await client.RequestAsync(new() { ["type"] = "ping" })).GetProperty("type").GetString());

        // Redis is back (empty): the connection reconnects, a shard lease is claimed, publishing works again, and the
        // subscriber gets the message, in the channel's new epoch.
        await redis.Redis.RestartAsync();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        JsonElement ack;
        do
        {
            ack = await client.RequestAsync(new() { ["type"] = "publish", ["channel"] = "engine", ["data"] = 4 });
            Assert.True(DateTime.UtcNow < deadline, "publishing did not recover after Redis came back: " + ack.GetRawText());
        }
        while (ack.GetProperty("type").GetString() != "ok");

        var message = await client.ReceiveMessageAsync();
        Assert.Equal((ack.GetProperty("seq").GetInt64(), 4), (message.GetProperty("seq").GetInt64(), message.GetProperty("data").GetInt32()));
    }
}
