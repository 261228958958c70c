using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Relay.Services.Tests.Mqtt;
using Relay.Testing;

namespace Relay.Services.Tests.Connections;

/// <summary>
/// The per-address limits (Relay:Ingress:MaxConnectionsPerIp, ConnectionRatePerIp) over real sockets: clients connect
/// from loopback addresses of their own (127.0.0.x), which the server sees as different client addresses.
/// </summary>
public sealed class AddressLimitTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    // Each test takes addresses of its own, so tests running side by side on other servers never share one.
    private static readonly IPAddress Crowded = IPAddress.Parse("127.0.0.21");
    private static readonly IPAddress Neighbour = IPAddress.Parse("127.0.0.22");
    private static readonly IPAddress Abrupt = IPAddress.Parse("127.0.0.23");
    private static readonly IPAddress Hasty = IPAddress.Parse("127.0.0.24");
    private static readonly IPAddress Patient = IPAddress.Parse("127.0.0.25");
    private static readonly IPAddress Device = IPAddress.Parse("127.0.0.26");
    private static readonly IPAddress OtherDevice = IPAddress.Parse("127.0.0.27");

    private static readonly string Upgrade = RawConnection.UpgradeRequest();

    [Fact]
    public async Task PastMaxConnectionsPerIp_EveryProtocolFromThatAddressGets429_AnotherAddressConnects_AndClosedPlacesAreTakenAgain()
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:MaxConnectionsPerIp"] = "2" });
        var held = new List<RawWebSocket>
        {
            await RawWebSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), source: Crowded),
            await RawWebSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), source: Crowded),
        };
        try
        {
            // A realtime upgrade, an SSE stream, an HTTP request and a Pusher upgrade from the address: 429 with 42900.
            foreach (var request in new[]
            {
                Upgrade,
                $"GET /v1/sse?channel=a&key={Uri.EscapeDataString(RelayServer.Key)} HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /v1/channels/a/messages HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /app/test.root?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            })
            {
                var refused = await RequestAsync(server, request, Crowded);
                Assert.Equal(429, refused.Status);
                Assert.Equal("5", refused.Header("Retry-After"));
                Assert.Contains("\"code\":42900", refused.Body, StringComparison.Ordinal);
                Assert.Contains("MaxConnectionsPerIp", refused.Body, StringComparison.Ordinal);
            }

            // Another address is not counted against it.
            held.Add(await RawWebSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), source: Neighbour));

            // A closed connection frees its place: the address connects again, up to the limit and no further.
            await held[0].DisposeAsync();
            held.RemoveAt(0);
            held.Add(await ConnectWhenFreedAsync(server, Crowded));
            Assert.Equal(429, (await RequestAsync(server, Upgrade, Crowded)).Status);

            using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = Timeout };
            var text = await http.GetStringAsync(new Uri("metrics", UriKind.Relative));
            Assert.True(Refusals(text, "ip_connections") >= 5, text);
        }
        finally
        {
            foreach (var socket in held)
            {
                await socket.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task ConnectionsThatDieAbruptly_AreCountedOut_NoLeak()
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:MaxConnectionsPerIp"] = "3" });

        // Five rounds of three connections reset without a close (RST): each round the address gets its three places back.
        for (var round = 0; round < 5; round++)
        {
            var sockets = new List<Socket>();
            for (var i = 0; i < 3; i++)
            {
                sockets.Add(await OpenRealtimeSocketAsync(server, Abrupt));
            }

            foreach (var socket in sockets)
            {
                socket.LingerState = new LingerOption(true, 0);
                socket.Dispose();
            }
        }

        var held = new List<RawWebSocket>();
        try
        {
            held.Add(await ConnectWhenFreedAsync(server, Abrupt));
            held.Add(await ConnectWhenFreedAsync(server, Abrupt));
            held.Add(await ConnectWhenFreedAsync(server, Abrupt));
            Assert.Equal(429, (await RequestAsync(server, Upgrade, Abrupt)).Status);
        }
        finally
        {
            foreach (var socket in held)
            {
                await socket.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task PastConnectionRatePerIp_NewConnectionsGet429WithRetryAfter_AnotherAddressIsNotSlowed_AndTheBucketRefills()
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Ingress:ConnectionRatePerIp"] = "1",
            ["Relay:Ingress:ConnectionBurstPerIp"] = "3",
        });

        // 20 connections as fast as one client opens them: the burst of 3 (and at most a few refilled) pass, the rest are refused.
        var statuses = new List<int>();
        RawResponse? refused = null;
        for (var i = 0; i < 20; i++)
        {
            var answer = await RequestAsync(server, "GET /v1/channels/a/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Hasty);
            statuses.Add(answer.Status);
            refused ??= answer.Status == 429 ? answer : null;
        }

        // The burst passes whatever the machine's speed; refused ones follow (no timing is assumed beyond 20 requests taking under 17 s).
        Assert.DoesNotContain(429, statuses.Take(3));
        Assert.Contains(429, statuses);
        Assert.NotNull(refused);
        Assert.Equal("1", refused.Header("Retry-After"));
        Assert.Contains("\"code\":42900", refused.Body, StringComparison.Ordinal);
        Assert.Contains("ConnectionRatePerIp", refused.Body, StringComparison.Ordinal);

        // Another address has a bucket of its own.
        await using (await RawWebSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), source: Patient))
        {
        }

        // The refused address gets in again once its bucket refills (a second a token).
        await using var again = await ConnectWhenFreedAsync(server, Hasty);
    }

    [Fact]
    public async Task Mqtt_PastMaxConnectionsPerIp_ConnAckQuotaExceededOnV5_ServerUnavailableOnV311_AnotherAddressConnects()
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:MaxConnectionsPerIp"] = "1" });
        await using var first = await RawMqttClient.OpenAsync(server, source: Device);
        await first.ConnectAsync(5, "device-first");

        // MQTT 5: CONNACK reason code 0x97 (Quota exceeded); 3.1.1: return code 0x03 (Server unavailable). Then closed.
        foreach (var (level, code) in new[] { ((byte)5, (byte)0x97), ((byte)4, (byte)0x03) })
        {
            await using var refused = await RawMqttClient.OpenAsync(server, source: Device);
            await refused.SendAsync(RawMqttClient.Connect(level, "device-refused-" + level));
            var packets = await refused.ReadUntilClosedAsync();
            var connAck = Assert.Single(packets);
            Assert.Equal((byte)0x20, connAck.First);
            Assert.Equal(code, connAck.Body[1]);
        }

        await using var other = await RawMqttClient.OpenAsync(server, source: OtherDevice);
        await other.ConnectAsync(4, "device-other");

        // The first device's connection closes: its address connects again.
        await first.DisposeAsync();
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            await using var again = await RawMqttClient.OpenAsync(server, source: Device);
            await again.SendAsync(RawMqttClient.Connect(4, "device-again"));
            if (await again.ReadPacketAsync() is { First: 0x20 } ack && ack.Body[1] == 0)
            {
                break;
            }

            Assert.True(DateTime.UtcNow < deadline, "the closed MQTT connection's place was never freed");
            await Task.Delay(100);
        }
    }

    [Fact]
    public void Options_NegativePerIpLimit_StopsStartUp_NamingTheSetting()
    {
        var error = Assert.ThrowsAny<Exception>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:ConnectionRatePerIp"] = "-1" }).GetAwaiter().GetResult());
        Assert.Contains("Relay:Ingress:ConnectionRatePerIp is -1", error.ToString(), StringComparison.Ordinal);
    }

    /// <summary>Sends one request from <paramref name="source"/> and reads the answer.</summary>
    private static async Task<RawResponse> RequestAsync(RelayServer server, string request, IPAddress source)
    {
        await using var connection = await RawConnection.ConnectAsync(server.BaseAddress, source);
        await connection.SendAsync(request);
        return await connection.ReadResponseAsync(Timeout);
    }

    /// <summary>Connects from <paramref name="source"/>, retrying while the server has not yet counted a closed connection out.</summary>
    private static async Task<RawWebSocket> ConnectWhenFreedAsync(RelayServer server, IPAddress source)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            try
            {
                return await RawWebSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), source: source);
            }
            catch (Exception ex) when (ex is IOException or InvalidOperationException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
    }

    /// <summary>A realtime connection on a bare socket (to reset it), once the upgrade was answered 101.</summary>
    private static async Task<Socket> OpenRealtimeSocketAsync(RelayServer server, IPAddress source)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(source, 0));
            await socket.ConnectAsync(IPAddress.Loopback, server.BaseAddress.Port).WaitAsync(Timeout);
            using var stream = new NetworkStream(socket, ownsSocket: false);
            await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(Upgrade)).AsTask().WaitAsync(Timeout);
            var first = new byte[12];
            await stream.ReadExactlyAsync(first).AsTask().WaitAsync(Timeout);
            if (System.Text.Encoding.ASCII.GetString(first) == "HTTP/1.1 101")
            {
                return socket;
            }

            // Refused (429): the server has not counted the last round's resets out yet.
            socket.Dispose();
            Assert.True(DateTime.UtcNow < deadline, "reset connections were never counted out");
            await Task.Delay(100);
        }
    }

    /// <summary>The count of <c>relay_ingress_limit_refusals_total</c> for <paramref name="reason"/> in a scrape.</summary>
    internal static double Refusals(string metrics, string reason)
    {
        foreach (var line in metrics.Split('\n'))
        {
            if (line.StartsWith("relay_ingress_limit_refusals_total{", StringComparison.Ordinal) && line.Contains($"reason=\"{reason}\"", StringComparison.Ordinal))
            {
                return double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }
}
