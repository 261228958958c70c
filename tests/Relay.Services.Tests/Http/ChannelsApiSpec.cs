using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Http;

public abstract class ChannelsApiSpec(IServerFixture fixture)
{
    private readonly RelayServer _server = fixture.Server;

    private HttpClient Client(string? key = RelayServer.Key)
    {
        var http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        if (key is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(key)));
        }

        return http;
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpClient http, HttpMethod method, string path, string? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    private static void AssertError(HttpStatusCode expected, int code, (HttpStatusCode Status, JsonElement Body) actual)
    {
        Assert.Equal(expected, actual.Status);
        var error = actual.Body.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetInt32());
        Assert.Equal((int)expected, error.GetProperty("statusCode").GetInt32());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
    }

    [Fact]
    public async Task Post_OneMessage_Returns201WithSeqAndDeliversToSubscriber()
    {
        await using var subscriber = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "http:one" });
        using var http = Client();
        var (status, body) = await SendAsync(http, HttpMethod.Post, "v1/channels/http:one/messages", """{"name":"n","data":{"a":1},"id":"x1"}""");
        Assert.Equal(HttpStatusCode.Created, status);
        Assert.Equal("http:one", body.GetProperty("channel").GetString());
        Assert.Equal([1L], body.GetProperty("seqs").EnumerateArray().Select(static s => s.GetInt64()));
        var message = await subscriber.ReceiveMessageAsync();
        Assert.Equal(1, message.GetProperty("data").GetProperty("a").GetInt32());
        Assert.Equal("n", message.GetProperty("name").GetString());
        Assert.Equal("x1", message.GetProperty("id").GetString());
    }

    [Fact]
    public async Task Post_Array_ReturnsConsecutiveSeqs_AndIdempotentRepeatReturnsFirstSeqs()
    {
        using var http = Client();
        var (status, body) = await SendAsync(http, HttpMethod.Post, "v1/channels/http:many/messages", """[{"data":1,"id":"m1"},{"data":2,"id":"m2"},{"data":3}]""");
        Assert.Equal(HttpStatusCode.Created, status);
        Assert.Equal([1L, 2, 3], body.GetProperty("seqs").EnumerateArray().Select(static s => s.GetInt64()));
        var (_, again) = await SendAsync(http, HttpMethod.Post, "v1/channels/http:many/messages", """[{"data":1,"id":"m1"},{"data":2,"id":"m2"}]""");
        Assert.Equal([1L, 2], again.GetProperty("seqs").EnumerateArray().Select(static s => s.GetInt64()));
    }

    [Fact]
    public async Task Post_ChannelWithLevels_EncodedSlashWorks()
    {
        using var http = Client();
        var (status, body) = await SendAsync(http, HttpMethod.Post, "v1/channels/a%2Fb%2Fc/messages", """{"data":1}""");
        Assert.Equal(HttpStatusCode.Created, status);
        Assert.Equal("a/b/c", body.GetProperty("channel").GetString());
    }

    [Fact]
    public async Task Get_History_ReturnsMessagesOldestFirstWithLimitAndBefore()
    {
        using var http = Client();
        await SendAsync(http, HttpMethod.Post, "v1/channels/http:hist/messages", """[{"data":1},{"data":2},{"data":3},{"data":4}]""");
        var (status, body) = await SendAsync(http, HttpMethod.Get, "v1/channels/http:hist/messages?limit=2&before=4");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("http:hist", body.GetProperty("channel").GetString());
        Assert.False(string.IsNullOrEmpty(body.GetProperty("epoch").GetString()));
        Assert.Equal([2, 3], body.GetProperty("messages").EnumerateArray().Select(static m => m.GetProperty("data").GetInt32()));
    }

    [Fact]
    public async Task Get_Channels_ListsSubscribedChannelsWithCounts()
    {
        await using var a = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await using var b = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await a.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "listed:x" });
        await b.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "listed:x" });
        await b.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "listed:y" });
        using var http = Client();
        var (status, body) = await SendAsync(http, HttpMethod.Get, "v1/channels?prefix=listed:");
        Assert.Equal(HttpStatusCode.OK, status);
        var channels = body.GetProperty("channels").EnumerateArray().ToDictionary(static c => c.GetProperty("channel").GetString()!, static c => c.GetProperty("subscribers").GetInt32());
        Assert.Equal(new Dictionary<string, int> { ["listed:x"] = 2, ["listed:y"] = 1 }, channels);

        using var other = Client(RelayServer.OtherAppKey);
        var (_, otherBody) = await SendAsync(other, HttpMethod.Get, "v1/channels?prefix=listed:");
        Assert.Equal(0, otherBody.GetProperty("channels").GetArrayLength());
    }

    [Fact]
    public async Task ConcurrentSubscribesAndUnsubscribes_LeaveFanOutWithTheRealCount_AndTheStayersGetMessages()
    {
        // Many connections on one channel subscribing and unsubscribing at once: each change sends the node's new
        // subscriber count for the channel, and counts computed in one order but sent in another once left fan-out
        // believing a node had none (or some) when the opposite was true.
        const int connections = 16;
        const int rounds = 40;
        var sockets = new TestSocket[connections];
        for (var i = 0; i < connections; i++)
        {
            sockets[i] = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        }

        try
        {
            // Every connection churns; the odd ones end subscribed, the even ones unsubscribed.
            await Task.WhenAll(sockets.Select((socket, i) => Task.Run(async () =>
            {
                for (var round = 0; round < rounds; round++)
                {
                    await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "churn:one" });
                    if (round < rounds - 1 || i % 2 == 0)
                    {
                        await socket.RequestAsync(new() { ["type"] = "unsubscribe", ["channel"] = "churn:one" });
                    }
                }
            })));

            using var http = Client();
            var (status, body) = await SendAsync(http, HttpMethod.Get, "v1/channels?prefix=churn:");
            Assert.Equal(HttpStatusCode.OK, status);
            var listed = body.GetProperty("channels").EnumerateArray().ToDictionary(static c => c.GetProperty("channel").GetString()!, static c => c.GetProperty("subscribers").GetInt32());
            Assert.Equal(new Dictionary<string, int> { ["churn:one"] = connections / 2 }, listed);

            var (posted, _) = await SendAsync(http, HttpMethod.Post, "v1/channels/churn:one/messages", """{"data":"after"}""");
            Assert.Equal(HttpStatusCode.Created, posted);
            for (var i = 1; i < connections; i += 2)
            {
                var message = await sockets[i].ReceiveMatchingAsync(static m => m.GetProperty("type").GetString() == "message" && m.GetProperty("data").GetString() == "after");
                Assert.Equal("churn:one", message.GetProperty("channel").GetString());
            }
        }
        finally
        {
            foreach (var socket in sockets)
            {
                await socket.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Errors_FollowTheErrorTable()
    {
        using var anonymous = Client(null);
        AssertError(HttpStatusCode.Unauthorized, 40101, await SendAsync(anonymous, HttpMethod.Post, "v1/channels/e/messages", """{"data":1}"""));
        using var wrong = Client("test.root:not-the-secret-000000000");
        AssertError(HttpStatusCode.Unauthorized, 40102, await SendAsync(wrong, HttpMethod.Post, "v1/channels/e/messages", """{"data":1}"""));
        using var subscribeOnly = Client(RelayServer.SubscribeOnlyKey);
        AssertError(HttpStatusCode.Forbidden, 40300, await SendAsync(subscribeOnly, HttpMethod.Post, "v1/channels/e/messages", """{"data":1}"""));
        using var chatOnly = Client(RelayServer.ChatOnlyKey);
        AssertError(HttpStatusCode.Forbidden, 40300, await SendAsync(chatOnly, HttpMethod.Get, "v1/channels/news/messages"));
        using var http = Client();
        AssertError(HttpStatusCode.BadRequest, 40002, await SendAsync(http, HttpMethod.Post, "v1/channels/a*b/messages", """{"data":1}"""));
        AssertError(HttpStatusCode.BadRequest, 40000, await SendAsync(http, HttpMethod.Post, "v1/channels/e/messages", """{"data":"""));
        AssertError(HttpStatusCode.BadRequest, 40000, await SendAsync(http, HttpMethod.Post, "v1/channels/e/messages", """{"name":"no data"}"""));
        AssertError(HttpStatusCode.BadRequest, 40000, await SendAsync(http, HttpMethod.Post, "v1/channels/e/messages", """[]"""));
        AssertError(HttpStatusCode.BadRequest, 40000, await SendAsync(http, HttpMethod.Post, "v1/channels/e/messages", """{"data":1,"id":5}"""));
        AssertError(HttpStatusCode.BadRequest, 40000, await SendAsync(http, HttpMethod.Get, "v1/channels/e/messages?limit=5000"));
        AssertError(HttpStatusCode.RequestEntityTooLarge, 41300, await SendAsync(http, HttpMethod.Post, "v1/channels/e/messages", JsonSerializer.Serialize(new { data = new string('x', 5000) })));
    }

    [Fact]
    public async Task Health_Endpoints_Answer200()
    {
        using var http = Client(null);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("readyz")).StatusCode);
    }

    [Fact]
    public async Task Metrics_ArePrometheusTextWithIngressCounters()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "metered" });
        using var http = Client();
        await SendAsync(http, HttpMethod.Post, "v1/channels/metered/messages", """{"data":1}""");
        await socket.ReceiveMessageAsync();
        using var response = await http.GetAsync("metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("# TYPE relay_ingress_connections gauge", text, StringComparison.Ordinal);
        // A series without labels may be written "name{} value" (the OpenTelemetry exporter does) or "name value".
        var published = text.Split('\n').Single(static l => l.StartsWith("relay_ingress_messages_in_total ", StringComparison.Ordinal) || l.StartsWith("relay_ingress_messages_in_total{} ", StringComparison.Ordinal));
        Assert.True(double.Parse(published.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) >= 1, published);
        Assert.Contains("relay_ingress_publish_to_deliver_seconds_bucket{le=\"+Inf\"}", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TokenFromTokensEndpoint_ConnectsRealtimeWithClippedCapabilities()
    {
        using var http = Client(RelayServer.ChatOnlyKey);
        var (status, body) = await SendAsync(http, HttpMethod.Post, "v1/tokens", """{"clientId":"tok","capabilities":{"chat:*":["subscribe"]},"ttlSeconds":60}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var token = body.GetProperty("token").GetString();
        await using var socket = await TestSocket.ConnectAsync(new Uri($"{_server.RealtimeUri}?token={token}"));
        Assert.Equal("tok", socket.Connected.GetProperty("clientId").GetString());
        Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "chat:t" })).GetProperty("type").GetString());
        Assert.Equal(40300, (await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = "chat:t", ["data"] = 1 })).GetProperty("code").GetInt32());
    }
}
