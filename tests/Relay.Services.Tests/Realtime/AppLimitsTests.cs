using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Services.Tests.Grpc;
using Relay.Services.Tests.Mqtt;
using Relay.Services.Tests.Pusher;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// Per-app limits on a node (Relay:Ingress:AppLimits) over real sockets: app <c>test</c> is limited, app <c>other</c> is
/// not, and must never notice what <c>test</c> does.
/// </summary>
public sealed class AppLimitsTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    private static Dictionary<string, string?> Limits(params (string Name, int Value)[] limits)
    {
        var settings = PusherServerFixture.Settings();
        foreach (var (name, value) in limits)
        {
            settings[$"Relay:Ingress:AppLimits:Apps:test:{name}"] = value.ToString(CultureInfo.InvariantCulture);
        }

        return settings;
    }

    private static HttpClient Http(RelayServer server, string key)
    {
        var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = Timeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(key)));
        return http;
    }

    [Fact]
    public async Task AppFloodingPublishes_Gets42900PerRequest_ConnectionsStay_WhileAnotherAppsPublishesAreAllAcknowledgedAndDelivered()
    {
        const int Flooders = 4;
        const int PerFlooder = 40;
        const int Calm = 100;
        await using var server = await RelayServer.StartAsync(Limits(("PublishRatePerSecond", 10), ("PublishBurst", 10)));
        var flooders = new List<TestSocket>();
        for (var i = 0; i < Flooders; i++)
        {
            flooders.Add(await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key)));
        }

        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.OtherAppKey));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.OtherAppKey));
        Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "calm" })).GetProperty("type").GetString());
        try
        {
            // Every flooder sends its publishes in one batched frame, while the other app publishes as fast: both at once.
            async Task<List<string>> FloodAsync(TestSocket socket)
            {
                await socket.SendTextAsync("[" + string.Join(",", Enumerable.Range(1, PerFlooder).Select(static i => $$"""{"type":"publish","ref":{{i}},"channel":"flood","data":{{i}}}""")) + "]");
                var outcomes = new List<string>();
                for (var i = 0; i < PerFlooder; i++)
                {
                    var reply = await socket.ReceiveMatchingAsync(static e => e.TryGetProperty("ref", out _));
                    outcomes.Add(reply.GetProperty("type").GetString() == "ok" ? "ok" : reply.GetProperty("code").GetInt32().ToString(CultureInfo.InvariantCulture));
                }

                return outcomes;
            }

            var flooding = flooders.Select(FloodAsync).ToList();
            await publisher.SendTextAsync("[" + string.Join(",", Enumerable.Range(1, Calm).Select(static i => $$"""{"type":"publish","ref":{{i}},"channel":"calm","data":{{i}}}""")) + "]");
            var calmReplies = new List<string>();
            for (var i = 0; i < Calm; i++)
            {
                calmReplies.Add((await publisher.ReceiveMatchingAsync(static e => e.TryGetProperty("ref", out _))).GetProperty("type").GetString()!);
            }

            var outcomes = (await Task.WhenAll(flooding)).SelectMany(static o => o).ToList();

            // The flooding app gets its burst and what refilled meanwhile (10 a second), and 42900 for the rest.
            Assert.Equal(Flooders * PerFlooder, outcomes.Count);
            Assert.All(outcomes, static o => Assert.Contains(o, new[] { "ok", "42900" }));
            Assert.InRange(outcomes.Count(static o => o == "ok"), 10, 80);

            // The other app: every publish acknowledged and delivered, in order.
            Assert.All(calmReplies, static r => Assert.Equal("ok", r));
            for (var i = 1; i <= Calm; i++)
            {
                Assert.Equal(i, (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetInt32());
            }

            // The refused connections stay: a subscribe is answered, and once the bucket refills a publish goes through.
            foreach (var socket in flooders)
            {
                Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "after" })).GetProperty("type").GetString());
            }

            await UntilAsync(async () => (await flooders[0].RequestAsync(new() { ["type"] = "publish", ["channel"] = "after", ["data"] = 1 })).GetProperty("type").GetString() == "ok", "the app's bucket never refilled");

            // HTTP: the limited app's publish is refused 429 with 42900 and Retry-After once its bucket is empty; the other app's is not.
            using var testHttp = Http(server, RelayServer.Key);
            using var otherHttp = Http(server, RelayServer.OtherAppKey);
            HttpResponseMessage? refused = null;
            for (var i = 0; i < 40 && refused is null; i++)
            {
                var response = await testHttp.PostAsync("v1/channels/flood/messages", new StringContent("""[{"data":1},{"data":2},{"data":3}]""", Encoding.UTF8, "application/json"));
                if (response.StatusCode == HttpStatusCode.TooManyRequests)
                {
                    refused = response;
                }
                else
                {
                    Assert.Equal(HttpStatusCode.Created, response.StatusCode);
                    response.Dispose();
                }
            }

            Assert.NotNull(refused);
            using (refused)
            {
                Assert.Equal("1", refused.Headers.RetryAfter?.ToString());
                Assert.Equal(42900, JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetInt32());
            }

            for (var i = 0; i < 20; i++)
            {
                using var response = await otherHttp.PostAsync("v1/channels/calm/messages", new StringContent("""[{"data":1},{"data":2},{"data":3}]""", Encoding.UTF8, "application/json"));
                Assert.Equal(HttpStatusCode.Created, response.StatusCode);
            }

            var metrics = await otherHttp.GetStringAsync(new Uri("metrics", UriKind.Relative));
            Assert.True(Connections.AddressLimitTests.Refusals(metrics, "app_publishes") >= 80, metrics);
        }
        finally
        {
            foreach (var socket in flooders)
            {
                await socket.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task AppAtMaxConnections_WebSocketAndSseGet429_AnotherAppConnects_AndClosedOrDeadConnectionsFreeTheirPlaces()
    {
        await using var server = await RelayServer.StartAsync(Limits(("MaxConnections", 2)));
        var framework = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var raw = await RawWebSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        try
        {
            await AssertUpgradeAndSseRefusedAsync(server);
            Assert.Equal(HttpStatusCode.TooManyRequests, await TestSocket.RefusedUpgradeAsync(server.RealtimeUriWithKey(RelayServer.Key)));

            // Another app is not counted against it.
            await using (var other = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.OtherAppKey)))
            {
                await using var otherStream = await SseTestClient.OpenAsync(new Uri(server.BaseAddress, $"v1/sse?channel=a&key={Uri.EscapeDataString(RelayServer.OtherAppKey)}"));
                Assert.Equal(HttpStatusCode.OK, otherStream.Status);
            }

            // A closed connection frees its place, and so does one that dies without a close (a reset).
            await framework.DisposeAsync();
            framework = await UntilConnectedAsync(server);
            ((NetworkStream)raw.Stream).Socket.LingerState = new LingerOption(true, 0);
            await raw.DisposeAsync();
            await using var afterReset = await UntilConnectedAsync(server);
            await AssertUpgradeAndSseRefusedAsync(server);
        }
        finally
        {
            await framework.DisposeAsync();
            await raw.DisposeAsync();
        }
    }

    /// <summary>
    /// A WebSocket upgrade and an SSE stream of app <c>test</c> refused at an app limit: 429 with 42900 and
    /// <c>Retry-After: 1</c>, the body saying <paramref name="says"/>.
    /// </summary>
    internal static async Task AssertUpgradeAndSseRefusedAsync(RelayServer server, string says = "AppLimits")
    {
        foreach (var request in new[]
        {
            RawConnection.UpgradeRequest(),
            $"GET /v1/sse?channel=a&key={Uri.EscapeDataString(RelayServer.Key)} HTTP/1.1\r\nHost: x\r\n\r\n",
        })
        {
            await using var connection = await RawConnection.ConnectAsync(server.BaseAddress);
            await connection.SendAsync(request);
            var refused = await connection.ReadResponseAsync(Timeout);
            Assert.Equal(429, refused.Status);
            Assert.Equal("1", refused.Header("Retry-After"));
            Assert.Contains("\"code\":42900", refused.Body, StringComparison.Ordinal);
            Assert.Contains(says, refused.Body, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AppAtMaxSubscriptions_Gets42900AcrossItsConnections_AnotherAppSubscribes_AndUnsubscribingOrClosingFreesPlaces()
    {
        await using var server = await RelayServer.StartAsync(Limits(("MaxSubscriptions", 3)));
        await using var b = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await using var other = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.OtherAppKey));
        var a = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        try
        {
            Assert.Equal("ok", await SubscribeAsync(a, "s0"));
            Assert.Equal("ok", await SubscribeAsync(a, "s1"));
            Assert.Equal("ok", await SubscribeAsync(b, "s2"));
            Assert.Equal("42900", await SubscribeAsync(b, "s3"));
            for (var i = 0; i < 5; i++)
            {
                Assert.Equal("ok", await SubscribeAsync(other, $"o{i}"));
            }

            await a.RequestAsync(new() { ["type"] = "unsubscribe", ["channel"] = "s0" });
            Assert.Equal("ok", await SubscribeAsync(b, "s3"));
            Assert.Equal("42900", await SubscribeAsync(b, "s4"));

            // A closed connection's subscriptions are counted out (once the server has seen the close).
            await a.DisposeAsync();
            await UntilAsync(async () => await SubscribeAsync(b, "s4") == "ok", "a closed connection's subscriptions were never counted out");
        }
        finally
        {
            await a.DisposeAsync();
        }

        static async Task<string> SubscribeAsync(TestSocket socket, string channel)
        {
            var reply = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
            return reply.GetProperty("type").GetString() == "ok" ? "ok" : reply.GetProperty("code").GetInt32().ToString(CultureInfo.InvariantCulture);
        }
    }

    [Fact]
    public async Task Mqtt_AppAtMaxConnections_ConnAckRefusedByVersion_AndQos1PublishesOverTheAppRateGetPubAck0x97()
    {
        await using var server = await RelayServer.StartAsync(Limits(("MaxConnections", 1), ("PublishRatePerSecond", 3), ("PublishBurst", 3)));
        await using var device = await MqttClients.ConnectAsync(server, MqttProtocolVersion.V500);

        foreach (var (level, code) in new[] { ((byte)5, (byte)0x97), ((byte)4, (byte)0x03) })
        {
            await using var refused = await RawMqttClient.OpenAsync(server);
            await refused.SendAsync(RawMqttClient.Connect(level, "over-" + level));
            var connAck = Assert.Single(await refused.ReadUntilClosedAsync());
            Assert.Equal((byte)0x20, connAck.First);
            Assert.Equal(code, connAck.Body[1]);
        }

        await using var otherDevice = await MqttClients.ConnectAsync(server, MqttProtocolVersion.V311, RelayServer.OtherAppKey);

        var codes = new List<MqttClientPublishReasonCode>();
        for (var i = 0; i < 12; i++)
        {
            var result = await device.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("sensors/t").WithPayload("1")
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
            codes.Add(result.ReasonCode);
        }

        Assert.All(codes.Take(3), static c => Assert.Equal(MqttClientPublishReasonCode.Success, c));
        Assert.Contains(MqttClientPublishReasonCode.QuotaExceeded, codes);
        Assert.True(device.Client.IsConnected);

        // The other app publishes as much as it likes.
        for (var i = 0; i < 12; i++)
        {
            var result = await otherDevice.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("sensors/t").WithPayload("1")
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
            Assert.Equal(MqttClientPublishReasonCode.Success, result.ReasonCode);
        }
    }

    [Fact]
    public async Task Grpc_AppAtMaxConnections_ConnectEndsResourceExhausted42900_AndUnaryPublishesOverTheAppRateToo()
    {
        await using var server = await RelayServer.StartAsync(Limits(("MaxConnections", 1), ("PublishRatePerSecond", 3), ("PublishBurst", 3)));
        using var channel = GrpcClients.Channel(server);
        var client = GrpcClients.Client(channel);
        await using var first = await GrpcStream.ConnectAsync(client, GrpcClients.Key(RelayServer.Key));

        var refused = await Assert.ThrowsAsync<RpcException>(() => GrpcStream.ConnectAsync(client, GrpcClients.Key(RelayServer.Key)));
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.Equal(42900, GrpcClients.RelayCode(refused));
        await using var other = await GrpcStream.ConnectAsync(client, GrpcClients.Key(RelayServer.OtherAppKey));

        var outcomes = new List<int>();
        for (var i = 0; i < 12; i++)
        {
            try
            {
                await client.PublishAsync(GrpcClients.Publish("g", "1"), GrpcClients.Options(GrpcClients.Key(RelayServer.Key)));
                outcomes.Add(0);
            }
            catch (RpcException ex)
            {
                Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
                outcomes.Add(GrpcClients.RelayCode(ex));
            }
        }

        Assert.All(outcomes.Take(3), static c => Assert.Equal(0, c));
        Assert.Contains(42900, outcomes);
        for (var i = 0; i < 12; i++)
        {
            await client.PublishAsync(GrpcClients.Publish("g", "1"), GrpcClients.Options(GrpcClients.Key(RelayServer.OtherAppKey)));
        }
    }

    [Fact]
    public async Task Pusher_AppAtMaxConnections_Refused4004_AndHttpEventsOverTheAppRateGet429()
    {
        await using var server = await RelayServer.StartAsync(Limits(("MaxConnections", 1), ("PublishRatePerSecond", 2), ("PublishBurst", 2)));
        await using var first = await PusherSocket.ConnectAsync(server, "test.root", Timeout);
        await using var refused = await PusherSocket.OpenAsync(PusherSocket.UriFor(server, "test.root"), Timeout);
        var error = await refused.ReceiveAsync(Timeout);
        Assert.Equal("pusher:error", error.GetProperty("event").GetString());
        Assert.Equal(4004, error.GetProperty("data").GetProperty("code").GetInt32());
        Assert.Equal(4004, await refused.ClosedAsync(Timeout));
        await using var other = await PusherSocket.ConnectAsync(server, "other.root", Timeout);

        using var http = new HttpClient { Timeout = Timeout };
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 10; i++)
        {
            using var response = await http.SendAsync(PusherHttp.Request(server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", JsonSerializer.Serialize(new { name = "e", channel = "c", data = "1" })));
            statuses.Add(response.StatusCode);
        }

        Assert.All(statuses.Take(2), static s => Assert.Equal(HttpStatusCode.OK, s));
        Assert.Contains(HttpStatusCode.TooManyRequests, statuses);
        for (var i = 0; i < 10; i++)
        {
            using var response = await http.SendAsync(PusherHttp.Request(server, RelayServer.OtherAppKey, HttpMethod.Post, "/apps/other/events", JsonSerializer.Serialize(new { name = "e", channel = "c", data = "1" })));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    [Fact]
    public void Options_NegativeAppLimit_StopsStartUp_NamingTheSetting()
    {
        var error = Assert.ThrowsAny<Exception>(() => RelayServer.StartAsync(Limits(("MaxConnections", -1))).GetAwaiter().GetResult());
        Assert.Contains("Relay:Ingress:AppLimits:Apps:test:MaxConnections is -1", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task InMemoryBus_MaxClusterConnections_IsTheProcesssCount_RefusedAcrossTheCluster_AndAClosedPlaceOpens()
    {
        await using var server = await RelayServer.StartAsync(Limits(("MaxClusterConnections", 2)));
        var first = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await using var second = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        try
        {
            await AssertUpgradeAndSseRefusedAsync(server, "across the cluster");
            await using var other = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.OtherAppKey));
            await first.DisposeAsync();
            await using var third = await UntilConnectedAsync(server);
        }
        finally
        {
            await first.DisposeAsync();
        }
    }

    [Theory]
    [InlineData("Apps:test:MaxClusterConnections", "-1", "Relay:Ingress:AppLimits:Apps:test:MaxClusterConnections is -1")]
    [InlineData("ClusterCountsDown", "Sometimes", "Relay:Ingress:AppLimits:ClusterCountsDown")]
    public void Options_BadClusterSetting_StopsStartUp_NamingTheSetting(string setting, string value, string message)
    {
        var settings = PusherServerFixture.Settings();
        settings["Relay:Ingress:AppLimits:" + setting] = value;
        var error = Assert.ThrowsAny<Exception>(() => RelayServer.StartAsync(settings).GetAwaiter().GetResult());
        Assert.Contains(message, error.ToString(), StringComparison.Ordinal);
    }

    private static async Task<TestSocket> UntilConnectedAsync(RelayServer server)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            try
            {
                return await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
            }
            catch (System.Net.WebSockets.WebSocketException) when (DateTime.UtcNow < deadline)
            {
                // The closed connection is counted out when the server sees the close.
                await Task.Delay(100);
            }
        }
    }

    private static async Task UntilAsync(Func<Task<bool>> condition, string failure)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            await Task.Delay(100);
        }
    }
}
