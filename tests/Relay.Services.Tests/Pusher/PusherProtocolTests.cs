using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Relay.Client;
using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>The Pusher WebSocket protocol and HTTP API on raw sockets, for what pusher-js and the SDK never send.</summary>
public sealed class PusherProtocolTests(PusherServerFixture fixture) : IClassFixture<PusherServerFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private const string RootName = "test.root";

    private readonly RelayServer _server = fixture.Server;

    [Fact]
    public async Task Connect_KnownKey_GetsSocketIdAndActivityTimeout()
    {
        await using var socket = await PusherSocket.ConnectAsync(_server, RootName, Timeout);

        Assert.Matches(@"^\d+\.\d+$", socket.SocketId);
        Assert.Equal(120, socket.Established.GetProperty("activity_timeout").GetInt32());
        await socket.SendAsync("""{"event":"pusher:ping","data":{}}""");
        Assert.Equal("pusher:pong", (await socket.ReceiveAsync(Timeout)).GetProperty("event").GetString());
    }

    [Theory]
    [InlineData("nobody.none", "protocol=7", 4001)]
    [InlineData(RootName, null, 4008)]
    [InlineData(RootName, "protocol=99", 4007)]
    public async Task Connect_Refused_GetsPusherErrorThenCloseWithItsCode(string key, string? query, int code)
    {
        await using var socket = await PusherSocket.OpenAsync(PusherSocket.UriFor(_server, key, query), Timeout);

        var error = await socket.ReceiveAsync(Timeout);
        Assert.Equal("pusher:error", error.GetProperty("event").GetString());
        Assert.Equal(code, error.GetProperty("data").GetProperty("code").GetInt32());
        Assert.Equal(code, await socket.ClosedAsync(Timeout));
    }

    // An admitted Pusher upgrade is served on Relay's own transport (frames written straight into the socket's send buffer
    // and flushed once per publisher burst, as Relay's realtime connections are); a refused one goes on to Kestrel, whose
    // endpoint answers it with pusher:error and the close code (above).
    [Fact]
    public async Task Connect_Admitted_IsTakenByRelaysTransport_RefusedIsHandedToTheEndpoint()
    {
        var listener = _server.Services.GetRequiredService<Relay.Ingress.Realtime.RealtimeListenerFactory>();
        var (taken, handed) = (listener.Taken, listener.Handed);
        await using (var socket = await PusherSocket.ConnectAsync(_server, RootName, Timeout))
        {
            Assert.Equal(taken + 1, listener.Taken);
            var channel = "taken-" + Guid.NewGuid().ToString("N");
            await socket.SubscribeAsync(channel);
            Assert.Equal("pusher_internal:subscription_succeeded", (await socket.ReceiveAsync(Timeout)).GetProperty("event").GetString());
            await using var publisher = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
            for (var i = 0; i < 50; i++)
            {
                await publisher.PublishAsync(channel, new { n = i }, name: "tick").WaitAsync(Timeout);
            }

            for (var i = 0; i < 50; i++)
            {
                var tick = await socket.ReceiveAsync("tick", Timeout);
                Assert.Equal($$"""{"n":{{i}}}""", tick.GetProperty("data").GetString());
            }
        }

        (taken, handed) = (listener.Taken, listener.Handed);
        await using var refused = await PusherSocket.OpenAsync(PusherSocket.UriFor(_server, "nobody.none"), Timeout);
        Assert.Equal(4001, await refused.ClosedAsync(Timeout));
        Assert.Equal(taken, listener.Taken);
        Assert.True(listener.Handed > handed, "the refused upgrade did not reach Kestrel's endpoint");
    }

    [Fact]
    public async Task Subscribe_PrivateWithBadSignature_GetsAuthError401AndNoMessages()
    {
        await using var socket = await PusherSocket.ConnectAsync(_server, RootName, Timeout);
        var channel = "private-bad-" + Guid.NewGuid().ToString("N");

        // Signed for another socket, then with another key's secret.
        await socket.SubscribeAsync(channel, PusherSocket.Auth(RelayServer.Key, "1.2:" + channel));
        var error = await socket.ReceiveAsync("pusher:subscription_error", Timeout);
        Assert.Equal(401, error.GetProperty("data").GetProperty("status").GetInt32());
        Assert.Equal("AuthError", error.GetProperty("data").GetProperty("type").GetString());
        await socket.SubscribeAsync(channel, RootName + ":" + PusherSocket.Auth(RelayServer.OtherAppKey, socket.SocketId + ":" + channel).Split(':')[1]);
        Assert.Equal(401, (await socket.ReceiveAsync("pusher:subscription_error", Timeout)).GetProperty("data").GetProperty("status").GetInt32());

        await using var relay = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        await relay.PublishAsync(channel, new { leaked = true }, name: "secret").WaitAsync(Timeout);
        await socket.SendAsync("""{"event":"pusher:ping","data":{}}""");
        Assert.Equal("pusher:pong", (await socket.ReceiveAsync(Timeout)).GetProperty("event").GetString());
    }

    [Fact]
    public async Task Subscribe_KeyWithoutTheCapability_GetsSubscriptionError403()
    {
        // test.chat may do anything on chat:* and nothing else.
        await using var socket = await PusherSocket.ConnectAsync(_server, "test.chat", Timeout);

        await socket.SubscribeAsync("news");
        var error = await socket.ReceiveAsync("pusher:subscription_error", Timeout);
        Assert.Equal(403, error.GetProperty("data").GetProperty("status").GetInt32());
        await socket.SubscribeAsync("chat:lobby");
        Assert.Equal("chat:lobby", (await socket.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout)).GetProperty("channel").GetString());
    }

    [Fact]
    public async Task ClientEvent_KeyWithoutPublish_Gets4009AndIsNotDelivered()
    {
        // test.sub may subscribe but not publish.
        await using var sender = await PusherSocket.ConnectAsync(_server, "test.sub", Timeout);
        await using var other = await PusherSocket.ConnectAsync(_server, RootName, Timeout);
        var channel = "private-ro-" + Guid.NewGuid().ToString("N");
        await sender.SubscribeAsync(channel, PusherSocket.Auth(RelayServer.SubscribeOnlyKey, sender.SocketId + ":" + channel));
        await sender.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        await other.SubscribeAsync(channel, PusherSocket.Auth(RelayServer.Key, other.SocketId + ":" + channel));
        await other.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);

        await sender.SendAsync(new { @event = "client-typing", channel, data = new { on = true } });
        var error = await sender.ReceiveAsync("pusher:error", Timeout);
        Assert.Equal(4009, error.GetProperty("data").GetProperty("code").GetInt32());

        await other.SendAsync(new { @event = "client-typing", channel, data = new { from = "other" } });
        var first = await sender.ReceiveAsync("client-typing", Timeout);
        Assert.Equal("{\"from\":\"other\"}", first.GetProperty("data").GetString());
    }

    [Fact]
    public async Task ClientEvent_OnPublicChannelOrOverMaxEventBytes_RefusedAndConnectionStays()
    {
        await using var socket = await PusherSocket.ConnectAsync(_server, RootName, Timeout);
        var channel = "private-big-" + Guid.NewGuid().ToString("N");
        await socket.SubscribeAsync("public-" + channel);
        await socket.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        await socket.SubscribeAsync(channel, PusherSocket.Auth(RelayServer.Key, socket.SocketId + ":" + channel));
        await socket.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);

        await socket.SendAsync(new { @event = "client-x", channel = "public-" + channel, data = "{}" });
        Assert.Contains("private and presence", (await socket.ReceiveAsync("pusher:error", Timeout)).GetProperty("data").GetProperty("message").GetString(), StringComparison.Ordinal);

        // 10 KB is the default: one byte over is refused; exactly 10 KB goes (and is not echoed to the sender: the pong is next).
        await socket.SendAsync(new { @event = "client-x", channel, data = new string('a', 10 * 1024 + 1) });
        Assert.Equal(4301, (await socket.ReceiveAsync("pusher:error", Timeout)).GetProperty("data").GetProperty("code").GetInt32());
        await socket.SendAsync(new { @event = "client-x", channel, data = new string('a', 10 * 1024) });
        await socket.SendAsync("""{"event":"pusher:ping","data":{}}""");
        Assert.Equal("pusher:pong", (await socket.ReceiveAsync(Timeout)).GetProperty("event").GetString());

        // A frame far over the limit is dropped whole and answered once.
        await socket.SendAsync(new { @event = "client-x", channel, data = new string('b', 200 * 1024) });
        Assert.Equal(4301, (await socket.ReceiveAsync("pusher:error", Timeout)).GetProperty("data").GetProperty("code").GetInt32());
        await socket.SendAsync("""{"event":"pusher:ping","data":{}}""");
        Assert.Equal("pusher:pong", (await socket.ReceiveAsync(Timeout)).GetProperty("event").GetString());
    }

    [Fact]
    public async Task MalformedFlood_FromManyConnections_AnsweredWithErrorsAndOthersServed()
    {
        var channel = "flood-" + Guid.NewGuid().ToString("N");
        await using var subscriber = await PusherSocket.ConnectAsync(_server, RootName, Timeout);
        await subscriber.SubscribeAsync(channel);
        await subscriber.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        await using var relay = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);

        string[] garbage = ["{", "[]", "42", "\"x\"", "{\"event\":5}", "{\"event\":\"pusher:subscribe\",\"data\":7}", "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"a+#\"}}", "{\"event\":\"client-x\"}", "\u0001\u0002", "{\"event\":\"pusher:signin\",\"data\":{}}", string.Empty];
        const int Connections = 20;
        const int Rounds = 20;
        var flooders = await Task.WhenAll(Enumerable.Range(0, Connections).Select(_ => PusherSocket.ConnectAsync(_server, RootName, Timeout)));
        try
        {
            var flooding = flooders.Select(async socket =>
            {
                for (var round = 0; round < Rounds; round++)
                {
                    foreach (var frame in garbage)
                    {
                        await socket.SendAsync(frame).WaitAsync(Timeout);
                    }

                    await socket.SendBytesAsync([0xFF, 0xFE, 0x00], System.Net.WebSockets.WebSocketMessageType.Binary).WaitAsync(Timeout);
                }
            }).ToList();
            for (var i = 1; i <= 50; i++)
            {
                await relay.PublishAsync(channel, new { i }, name: "tick").WaitAsync(Timeout);
            }

            await Task.WhenAll(flooding).WaitAsync(Timeout);
            for (var i = 1; i <= 50; i++)
            {
                var tick = await subscriber.ReceiveAsync("tick", Timeout);
                Assert.Equal($"{{\"i\":{i}}}", tick.GetProperty("data").GetString());
            }

            // Every flooder is still served: its errors came back, and a ping after them is answered.
            foreach (var socket in flooders)
            {
                await socket.SendAsync("""{"event":"pusher:ping","data":{}}""");
                await socket.ReceiveAsync("pusher:pong", Timeout);
                Assert.Null(socket.CloseStatus);
            }
        }
        finally
        {
            foreach (var socket in flooders)
            {
                await socket.DisposeAsync();
            }
        }
    }

    [Theory]
    [InlineData("""{"event":"pusher:subscribe","data":{"channel":"\ud800"}}""")]
    [InlineData("""{"event":"pusher:\udfff","data":{}}""")]
    [InlineData("""{"event":"pusher:subscribe","data":"{\"channel\":\"a\\ud800\"}"}""")]
    public async Task Frame_WithALoneSurrogate_IsMalformed_AndTheConnectionStays(string frame)
    {
        // Found by PusherFuzzTests: the string's reader threw (an error logged and "internal error", or, in the event
        // name, the connection ended).
        await using var socket = await PusherSocket.ConnectAsync(_server, RootName, Timeout);
        await socket.SendAsync(frame);
        var answer = await socket.ReceiveAsync(Timeout);
        Assert.True(answer.GetProperty("event").GetString() is "pusher:error" or "pusher:subscription_error", answer.GetRawText());
        Assert.DoesNotContain("internal error", answer.GetRawText(), StringComparison.Ordinal);
        await socket.SendAsync("""{"event":"pusher:ping","data":{}}""");
        Assert.Equal("pusher:pong", (await socket.ReceiveAsync(Timeout)).GetProperty("event").GetString());
    }

    [Fact]
    public async Task SignedChannelDataAndUserData_WithALoneSurrogate_AreRefused_AndTheConnectionStays()
    {
        await using var socket = await PusherSocket.ConnectAsync(_server, RootName, Timeout);
        const string Channel = "presence-surrogate";
        const string Member = """{"user_id":"\ud800"}""";
        await socket.SubscribeAsync(Channel, PusherSocket.Auth(RelayServer.Key, $"{socket.SocketId}:{Channel}:{Member}"), Member);
        var refused = await socket.ReceiveAsync(Timeout);
        Assert.Equal("pusher:subscription_error", refused.GetProperty("event").GetString());
        Assert.Equal(400, refused.GetProperty("data").GetProperty("status").GetInt32());

        const string User = """{"id":"\udfff"}""";
        await socket.SendAsync(new { @event = "pusher:signin", data = new { auth = PusherSocket.Auth(RelayServer.Key, $"{socket.SocketId}::user::{User}"), user_data = User } });
        var signIn = await socket.ReceiveAsync(Timeout);
        Assert.Equal("pusher:error", signIn.GetProperty("event").GetString());
        Assert.Equal(4009, signIn.GetProperty("data").GetProperty("code").GetInt32());
        await socket.SendAsync("""{"event":"pusher:ping","data":{}}""");
        Assert.Equal("pusher:pong", (await socket.ReceiveAsync(Timeout)).GetProperty("event").GetString());
    }

    [Fact]
    public async Task Frame_WithInvalidUtf8InABinaryMessage_IsMalformed_AndTheConnectionStays()
    {
        await using var socket = await PusherSocket.ConnectAsync(_server, RootName, Timeout);
        await socket.SendBytesAsync([.. "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"a"u8, 0xC3, 0x28, .. "\"}}"u8], System.Net.WebSockets.WebSocketMessageType.Binary);
        var answer = await socket.ReceiveAsync(Timeout);
        Assert.Equal("pusher:error", answer.GetProperty("event").GetString());
        Assert.StartsWith("malformed frame", answer.GetProperty("data").GetProperty("message").GetString(), StringComparison.Ordinal);
        await socket.SendAsync("""{"event":"pusher:ping","data":{}}""");
        Assert.Equal("pusher:pong", (await socket.ReceiveAsync(Timeout)).GetProperty("event").GetString());
    }

    [Theory]
    [InlineData("/apps/test/events", """{"name":"e","channel":"\ud800","data":"x"}""")]
    [InlineData("/apps/test/events", """{"name":"\udfff","channel":"c","data":"x"}""")]
    [InlineData("/apps/test/batch_events", """{"batch":[{"name":"e","channel":"c","data":"\ud800"}]}""")]
    public async Task HttpApi_SignedBodyWithALoneSurrogate_Is400(string path, string body)
    {
        // The same strings that were not text over the WebSocket (PusherFuzzTests), in a signed API request.
        using var http = new HttpClient();
        using var response = await http.SendAsync(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Post, path, body)).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    [Fact]
    public async Task AppIsolation_SameChannelNameInAnotherApp_GetsNothing()
    {
        var channel = "iso-" + Guid.NewGuid().ToString("N");
        await using var other = await PusherSocket.ConnectAsync(_server, "other.root", Timeout);
        await other.SubscribeAsync(channel);
        await other.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        await using var mine = await PusherSocket.ConnectAsync(_server, RootName, Timeout);
        await mine.SubscribeAsync(channel);
        await mine.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);

        using var http = new HttpClient();
        var body = JsonSerializer.Serialize(new { name = "mine", channel, data = "secret" });
        using (var response = await http.SendAsync(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", body)).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // The other app's key may not publish as this app, nor list its channels.
        using (var response = await http.SendAsync(PusherHttp.Request(_server, RelayServer.OtherAppKey, HttpMethod.Post, "/apps/test/events", body)).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }

        Assert.Equal("secret", (await mine.ReceiveAsync("mine", Timeout)).GetProperty("data").GetString());
        body = JsonSerializer.Serialize(new { name = "theirs", channel, data = "theirs" });
        using (var response = await http.SendAsync(PusherHttp.Request(_server, RelayServer.OtherAppKey, HttpMethod.Post, "/apps/other/events", body)).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // The other app's subscriber gets its own app's event first: the test app's never came.
        Assert.Equal("theirs", (await other.ReceiveAsync(Timeout)).GetProperty("event").GetString());
    }

    [Fact]
    public async Task HttpApi_BadRequests_GetPushersStatusCodes()
    {
        using var http = new HttpClient();
        var channel = "http-" + Guid.NewGuid().ToString("N");
        var body = JsonSerializer.Serialize(new { name = "e", channel, data = "x" });

        async Task<(HttpStatusCode, string)> Send(HttpRequestMessage request)
        {
            using (request)
            using (var response = await http.SendAsync(request).WaitAsync(Timeout))
            {
                return (response.StatusCode, await response.Content.ReadAsStringAsync());
            }
        }

        var stale = await Send(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", body, timestamp: DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 601));
        Assert.Equal(HttpStatusCode.Unauthorized, stale.Item1);
        Assert.Contains("Timestamp expired", stale.Item2, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await Send(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", body, timestamp: DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 590))).Item1);
        Assert.Equal(HttpStatusCode.Unauthorized, (await Send(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", body, bodyMd5: new string('0', 32)))).Item1);
        Assert.Equal(HttpStatusCode.Unauthorized, (await Send(PusherHttp.Request(_server, "test.root:wrong-secret", HttpMethod.Post, "/apps/test/events", body))).Item1);
        Assert.Equal(HttpStatusCode.Forbidden, (await Send(PusherHttp.Request(_server, RelayServer.SubscribeOnlyKey, HttpMethod.Post, "/apps/test/events", body))).Item1);
        Assert.Equal(HttpStatusCode.BadRequest, (await Send(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", "{\"name\":\"e\"}"))).Item1);
        var tooMany = JsonSerializer.Serialize(new { name = "e", channels = Enumerable.Range(0, 101).Select(i => $"c{i}"), data = "x" });
        Assert.Equal(HttpStatusCode.BadRequest, (await Send(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", tooMany))).Item1);
        var tooLarge = JsonSerializer.Serialize(new { name = "e", channel, data = new string('x', 10 * 1024 + 1) });
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await Send(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", tooLarge))).Item1);
        var users = await Send(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Get, "/apps/test/channels", query: "filter_by_prefix=private-&info=user_count"));
        Assert.Equal(HttpStatusCode.BadRequest, users.Item1);
    }

    [Fact]
    public async Task HttpApi_DataString_KeptExactForPusherAndJsonForRelay()
    {
        var channel = "exact-" + Guid.NewGuid().ToString("N");
        await using var pusher = await PusherSocket.ConnectAsync(_server, RootName, Timeout);
        await pusher.SubscribeAsync(channel);
        await pusher.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        await using var relay = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        var received = System.Threading.Channels.Channel.CreateUnbounded<Relay.Client.RelayMessage>();
        await relay.SubscribeAsync(channel, m => received.Writer.TryWrite(m)).WaitAsync(Timeout);

        using var http = new HttpClient();
        string[] data = ["{\"a\": 1,  \"b\":[true]}", "plain text", "\"quoted\"", "12.50", " ", "ünï \u2028 <&>"];
        foreach (var text in data)
        {
            using var response = await http.SendAsync(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", JsonSerializer.Serialize(new { name = "exact", channel, data = text }))).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        foreach (var text in data)
        {
            Assert.Equal(text, (await pusher.ReceiveAsync("exact", Timeout)).GetProperty("data").GetString());
            var message = await received.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal("exact", message.Name);
            if (text.StartsWith('{'))
            {
                Assert.Equal(1, message.Data.GetProperty("a").GetInt32());
            }
            else if (text == "12.50")
            {
                Assert.Equal(12.5m, message.Data.GetDecimal());
            }
            else
            {
                Assert.Equal(text, message.Data.GetString());
            }
        }
    }
}
