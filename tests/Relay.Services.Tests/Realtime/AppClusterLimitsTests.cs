using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.WebSockets;
using Grpc.Core;
using Relay.Services.Tests.Grpc;
using Relay.Services.Tests.Mqtt;
using Relay.Services.Tests.Pusher;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// An app's connection limit across the cluster (Relay:Ingress:AppLimits:Apps:test:MaxClusterConnections) over two nodes
/// on one real redis-server: every protocol's refusal on either node, a place freed on one taken on the other, a node
/// whose bus dies stops counting within Relay:Redis:NodeTtl, Redis out of reach follows ClusterCountsDown, and racing
/// opens admit exactly the cap. App <c>other</c> has no limit and never notices.
/// </summary>
public sealed class AppClusterLimitsTests(RedisBusFixture redis, ITestOutputHelper output) : IClassFixture<RedisBusFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    // A node silent this long stops counting (its beat every third of it); short, so the dead-node test is quick.
    private const string NodeTtl = "00:00:02";

    [Fact]
    public async Task CapOfTenOverTwoNodes_EleventhRefusedOnEitherInEachProtocol_AClosedPlaceOpensOnTheOtherNode_AnotherAppUnaffected()
    {
        await using var a = await RelayServer.StartAsync(Settings(10));
        await using var b = await RelayServer.StartAsync(Settings(10));
        await UntilCountedAsync(0);
        var held = new List<IAsyncDisposable>();
        try
        {
            // 6 WebSocket connections on node A, 4 Pusher connections on node B: 10 across the cluster.
            for (var i = 0; i < 6; i++)
            {
                held.Add(await TestSocket.ConnectAsync(a.RealtimeUriWithKey(RelayServer.Key)));
            }

            var pushers = new List<PusherSocket>();
            for (var i = 0; i < 4; i++)
            {
                pushers.Add(await PusherSocket.ConnectAsync(b, "test.root", Timeout));
            }

            held.AddRange(pushers);
            Assert.Equal(10, await CountedAsync());

            // The 11th, on either node, in every protocol: that protocol's app-limit refusal, naming the cluster-wide limit.
            foreach (var node in new[] { a, b })
            {
                await AssertRefusedAsync(node);
            }

            // Another app connects on both nodes meanwhile, in every protocol.
            foreach (var node in new[] { a, b })
            {
                await using var other = await TestSocket.ConnectAsync(node.RealtimeUriWithKey(RelayServer.OtherAppKey));
                await using var otherPusher = await PusherSocket.ConnectAsync(node, "other.root", Timeout);
                await using var otherMqtt = await MqttClients.ConnectAsync(node, MQTTnet.Formatter.MqttProtocolVersion.V500, RelayServer.OtherAppKey);
                using var channel = GrpcClients.Channel(node);
                await using var otherGrpc = await GrpcStream.ConnectAsync(GrpcClients.Client(channel), GrpcClients.Key(RelayServer.OtherAppKey));
            }

            // One closed on node A: its place is taken on node B (once node A has seen the close), and then no more.
            var closing = (TestSocket)held[0];
            held.RemoveAt(0);
            await closing.DisposeAsync();
            held.Add(await UntilAsync(() => PusherSocket.ConnectAsync(b, "test.root", Timeout), "the place the closed connection on node A held never opened on node B"));
            Assert.Equal(10, await CountedAsync());
            await AssertPusherRefusedAsync(b);
            Assert.Equal(HttpStatusCode.TooManyRequests, await TestSocket.RefusedUpgradeAsync(a.RealtimeUriWithKey(RelayServer.Key)));

            using var http = new HttpClient { BaseAddress = b.BaseAddress, Timeout = Timeout };
            var metrics = await http.GetStringAsync(new Uri("metrics", UriKind.Relative));
            Assert.True(Connections.AddressLimitTests.Refusals(metrics, "app_cluster_connections") >= 5, metrics);
        }
        finally
        {
            foreach (var connection in held)
            {
                await connection.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task RefusedUpgradeOnRelaysOwnListener_AsksRedisOnceAndCountsOneRefusal_WebSocketAndPusher()
    {
        // Cap 1, held by one WebSocket: the next upgrade is classified by Relay's listener, refused there, and answered by
        // Kestrel's endpoint with the listener's verdict (RefusedOpen), not a second ask.
        await using var node = await RelayServer.StartAsync(Settings(1));
        await UntilCountedAsync(0);
        await using var held = await TestSocket.ConnectAsync(node.RealtimeUriWithKey(RelayServer.Key));
        using var http = new HttpClient { BaseAddress = node.BaseAddress, Timeout = Timeout };

        await using (var monitor = await RedisMonitor.StartAsync(redis.Redis.Port))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, await TestSocket.RefusedUpgradeAsync(node.RealtimeUriWithKey(RelayServer.Key)));
            Assert.Equal(1, OpenScriptRuns(await monitor.UntilNowAsync(Timeout)));
        }

        Assert.Equal(1, Connections.AddressLimitTests.Refusals(await http.GetStringAsync(new Uri("metrics", UriKind.Relative)), "app_cluster_connections"));

        await using (var monitor = await RedisMonitor.StartAsync(redis.Redis.Port))
        {
            await AssertPusherRefusedAsync(node);
            Assert.Equal(1, OpenScriptRuns(await monitor.UntilNowAsync(Timeout)));
        }

        Assert.Equal(2, Connections.AddressLimitTests.Refusals(await http.GetStringAsync(new Uri("metrics", UriKind.Relative)), "app_cluster_connections"));

        // The open script reads the app's beats with HGETALL (the heartbeat script does not): one line per open asked.
        static int OpenScriptRuns(IReadOnlyList<string> commands) =>
            commands.Count(static c => c.Contains("lua", StringComparison.Ordinal) && c.Contains("\"HGETALL\"", StringComparison.Ordinal)
                && c.Contains(Relay.Bus.Redis.RedisKeys.ConnectionsPrefix(RelayServer.AppId) + "beats", StringComparison.Ordinal));
    }

    [Fact]
    public async Task NodeWhoseBusDies_ItsConnectionsStopCountingWithinTheNodeTtl_TheOtherNodeTakesThePlacesUpToTheCap()
    {
        // Node A reaches Redis through a forwarder of its own, so its bus alone can be cut.
        await using var path = TcpForwarder.Start(redis.Redis.Port);
        var atA = Settings(10);
        atA["Relay:Redis:Configuration"] = $"127.0.0.1:{path.Port.ToString(CultureInfo.InvariantCulture)}";

        // Its stop, with Redis out of reach, waits for commands to time out: quicker with 1 s.
        atA["Relay:Redis:CommandTimeout"] = "00:00:01";
        await using var a = await RelayServer.StartAsync(atA);
        await using var b = await RelayServer.StartAsync(Settings(10));
        await UntilCountedAsync(0);
        var atNodeA = new List<TestSocket>();
        var atNodeB = new List<TestSocket>();
        try
        {
            for (var i = 0; i < 6; i++)
            {
                atNodeA.Add(await TestSocket.ConnectAsync(a.RealtimeUriWithKey(RelayServer.Key)));
            }

            for (var i = 0; i < 4; i++)
            {
                atNodeB.Add(await TestSocket.ConnectAsync(b.RealtimeUriWithKey(RelayServer.Key)));
            }

            Assert.Equal(HttpStatusCode.TooManyRequests, await TestSocket.RefusedUpgradeAsync(b.RealtimeUriWithKey(RelayServer.Key)));

            // Node A's bus dies (as a crash looks from Redis: its connections reset, no goodbye); its clients stay connected to it.
            path.Cut();
            var cut = Stopwatch.StartNew();

            // Within the node TTL (2 s here) node B's next open drops node A's 6: node B then holds exactly the cap.
            atNodeB.Add(await UntilAsync(() => TestSocket.ConnectAsync(b.RealtimeUriWithKey(RelayServer.Key)), "node A's count was never dropped"));
            output.WriteLine($"node A's count dropped {cut.ElapsedMilliseconds} ms after its bus was cut (Relay:Redis:NodeTtl {NodeTtl})");
            for (var i = 0; i < 5; i++)
            {
                atNodeB.Add(await TestSocket.ConnectAsync(b.RealtimeUriWithKey(RelayServer.Key)));
            }

            Assert.Equal(HttpStatusCode.TooManyRequests, await TestSocket.RefusedUpgradeAsync(b.RealtimeUriWithKey(RelayServer.Key)));
            Assert.Equal(10, await CountedAsync());
        }
        finally
        {
            foreach (var socket in atNodeA.Concat(atNodeB))
            {
                await socket.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task RedisUnreachable_OpensAdmittedByDefaultAndCountedOnceItAnswers_OrRefused42900WithRefuse()
    {
        await using var toAdmitting = TcpForwarder.Start(redis.Redis.Port);
        await using var toRefusing = TcpForwarder.Start(redis.Redis.Port);
        var admittingSettings = Settings(10);
        admittingSettings["Relay:Redis:Configuration"] = $"127.0.0.1:{toAdmitting.Port.ToString(CultureInfo.InvariantCulture)}";
        admittingSettings["Relay:Redis:CommandTimeout"] = "00:00:01";
        var refusingSettings = Settings(10);
        refusingSettings["Relay:Redis:Configuration"] = $"127.0.0.1:{toRefusing.Port.ToString(CultureInfo.InvariantCulture)}";
        refusingSettings["Relay:Redis:CommandTimeout"] = "00:00:01";
        refusingSettings["Relay:Ingress:AppLimits:ClusterCountsDown"] = "Refuse";
        await using var admitting = await RelayServer.StartAsync(admittingSettings);
        await using var refusing = await RelayServer.StartAsync(refusingSettings);
        await UntilCountedAsync(0);
        var held = new List<TestSocket>();
        try
        {
            held.Add(await TestSocket.ConnectAsync(admitting.RealtimeUriWithKey(RelayServer.Key)));
            held.Add(await TestSocket.ConnectAsync(refusing.RealtimeUriWithKey(RelayServer.Key)));
            Assert.Equal(2, await CountedAsync());

            // Both nodes lose Redis. Admit (the default): connections open; Refuse: 429 with 42900 saying why.
            toAdmitting.Cut();
            toRefusing.Cut();
            for (var i = 0; i < 3; i++)
            {
                held.Add(await TestSocket.ConnectAsync(admitting.RealtimeUriWithKey(RelayServer.Key)));
            }

            await AppLimitsTests.AssertUpgradeAndSseRefusedAsync(refusing, "cannot be reached");

            // Redis answers the admitting node again: what it admitted meanwhile joins the count (its 4, the other's 1).
            toAdmitting.Restore();
            await UntilCountedAsync(5);
        }
        finally
        {
            toRefusing.Restore();
            foreach (var socket in held)
            {
                await socket.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task ThreeHundredConcurrentOpens_AgainstACapOfAHundredOverTwoNodes_AdmitExactlyAHundred()
    {
        const int Cap = 100;
        const int Opens = 300;
        await using var a = await RelayServer.StartAsync(Settings(Cap));
        await using var b = await RelayServer.StartAsync(Settings(Cap));
        await UntilCountedAsync(0);
        var outcomes = await Task.WhenAll(Enumerable.Range(0, Opens).Select(i => OpenAsync(i % 2 == 0 ? a : b)));
        try
        {
            Assert.Equal(Cap, outcomes.Count(static o => o.Socket is not null));
            Assert.All(outcomes.Where(static o => o.Socket is null), static o => Assert.Equal(HttpStatusCode.TooManyRequests, o.Refused));
            Assert.Equal(Cap, await CountedAsync());
        }
        finally
        {
            foreach (var (socket, _) in outcomes)
            {
                socket?.Dispose();
            }
        }

        // Closed, they are counted out: the app's count across the nodes goes back to 0.
        await UntilCountedAsync(0);

        static async Task<(ClientWebSocket? Socket, HttpStatusCode Refused)> OpenAsync(RelayServer node)
        {
            var socket = new ClientWebSocket();
            socket.Options.CollectHttpResponseDetails = true;
            try
            {
                await socket.ConnectAsync(node.RealtimeUriWithKey(RelayServer.Key), CancellationToken.None).WaitAsync(Timeout);
                return (socket, 0);
            }
            catch (WebSocketException)
            {
                var status = socket.HttpStatusCode;
                socket.Dispose();
                return (null, status);
            }
        }
    }

    private Dictionary<string, string?> Settings(int cap)
    {
        var settings = PusherServerFixture.Settings();
        redis.AddTo(settings);
        settings["Relay:Redis:NodeTtl"] = NodeTtl;
        settings["Relay:Ingress:AppLimits:Apps:test:MaxClusterConnections"] = cap.ToString(CultureInfo.InvariantCulture);
        return settings;
    }

    private static async Task AssertRefusedAsync(RelayServer node)
    {
        // WebSocket and SSE: 429 with 42900 and Retry-After before the upgrade or the stream.
        await AppLimitsTests.AssertUpgradeAndSseRefusedAsync(node, "across the cluster");

        await AssertPusherRefusedAsync(node);

        // MQTT: CONNACK quota exceeded (5) / server unavailable (3.1.1).
        foreach (var (level, code) in new[] { ((byte)5, (byte)0x97), ((byte)4, (byte)0x03) })
        {
            await using var mqtt = await RawMqttClient.OpenAsync(node);
            await mqtt.SendAsync(RawMqttClient.Connect(level, "over-" + level));
            var connAck = Assert.Single(await mqtt.ReadUntilClosedAsync());
            Assert.Equal((byte)0x20, connAck.First);
            Assert.Equal(code, connAck.Body[1]);
        }

        // gRPC: the Connect stream ends RESOURCE_EXHAUSTED with 42900.
        using var channel = GrpcClients.Channel(node);
        var refusedStream = await Assert.ThrowsAsync<RpcException>(() => GrpcStream.ConnectAsync(GrpcClients.Client(channel), GrpcClients.Key(RelayServer.Key)));
        Assert.Equal(StatusCode.ResourceExhausted, refusedStream.StatusCode);
        Assert.Equal(42900, GrpcClients.RelayCode(refusedStream));
        Assert.Contains("across the cluster", refusedStream.Status.Detail, StringComparison.Ordinal);
    }

    // Pusher: pusher:error 4004, then a close with 4004.
    private static async Task AssertPusherRefusedAsync(RelayServer node)
    {
        await using var refused = await PusherSocket.OpenAsync(PusherSocket.UriFor(node, "test.root"), Timeout);
        var error = await refused.ReceiveAsync(Timeout);
        Assert.Equal("pusher:error", error.GetProperty("event").GetString());
        Assert.Equal(4004, error.GetProperty("data").GetProperty("code").GetInt32());
        Assert.Contains("across the cluster", error.GetProperty("data").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(4004, await refused.ClosedAsync(Timeout));
    }

    // App test's connections counted in Redis, over every process (what the open script sums).
    private async Task<long> CountedAsync()
    {
        var reply = await RedisCommand.SendAsync(redis.Redis.Port, "HVALS", Relay.Bus.Redis.RedisKeys.ConnectionsPrefix(RelayServer.AppId) + "counts");
        Assert.StartsWith("*", reply, StringComparison.Ordinal);
        return reply.Split("\r\n").Where(static line => line.Length > 0 && line[0] is not ('*' or '$')).Sum(static line => long.Parse(line, CultureInfo.InvariantCulture));
    }

    private async Task UntilCountedAsync(long expected)
    {
        var deadline = DateTime.UtcNow + Timeout;
        long counted;
        while ((counted = await CountedAsync()) != expected)
        {
            Assert.True(DateTime.UtcNow < deadline, $"app test's count across the nodes stayed {counted}, not {expected}");
            await Task.Delay(100);
        }
    }

    private static async Task<T> UntilAsync<T>(Func<Task<T>> connect, string failure)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            try
            {
                return await connect();
            }
            catch (Exception e) when (e is WebSocketException or Xunit.Sdk.XunitException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
            catch (Exception e) when (DateTime.UtcNow >= deadline)
            {
                throw new TimeoutException(failure, e);
            }
        }
    }
}

