using System.Net;
using System.Net.Sockets;
using System.Text;
using Relay.Ingress.Connections;
using Relay.Testing;

namespace Relay.Services.Tests.Connections;

/// <summary>The node's connection cap (Relay:Ingress:MaxConnections) on a server in this process, over real sockets.</summary>
public sealed class ConnectionCapTests
{
    [Fact]
    public async Task PastMaxConnections_AnUpgradeGets503WithRetryAfter_AndAFreedPlaceIsTakenAgain()
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:MaxConnections"] = "3" });
        var held = new List<TestSocket>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                held.Add(await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key)));
            }

            var answer = await RawGetAsync(server, "/v1/realtime?key=" + Uri.EscapeDataString(RelayServer.Key), upgrade: true);
            Assert.StartsWith("HTTP/1.1 503 ", answer, StringComparison.Ordinal);
            Assert.Contains("\r\nRetry-After: 5\r\n", answer, StringComparison.Ordinal);
            Assert.Contains("\"code\":50300", answer, StringComparison.Ordinal);
            Assert.StartsWith("HTTP/1.1 503 ", await RawGetAsync(server, "/v1/channels", upgrade: false), StringComparison.Ordinal);

            // Probes still answer; readiness says the node is full.
            Assert.StartsWith("HTTP/1.1 200 ", await RawGetAsync(server, "/healthz", upgrade: false), StringComparison.Ordinal);
            Assert.StartsWith("HTTP/1.1 503 ", await RawGetAsync(server, "/readyz", upgrade: false), StringComparison.Ordinal);

            await held[0].DisposeAsync();
            held.RemoveAt(0);
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (true)
            {
                try
                {
                    held.Add(await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key)));
                    break;
                }
                catch (Exception) when (DateTime.UtcNow < deadline)
                {
                    // The closed connection is counted out when the server sees the close.
                    await Task.Delay(50);
                }
            }

            Assert.Equal("connected", held[^1].Connected.GetProperty("type").GetString());
        }
        finally
        {
            foreach (var socket in held)
            {
                await socket.DisposeAsync();
            }
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Mqtt_PastMaxConnections_ConnectGetsConnAckRefusedWithTheReason_NotHttp_AndAFreedPlaceIsTakenAgain(bool ownTransport)
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Ingress:MaxConnections"] = "2",
            ["Relay:Mqtt:OwnTransport"] = ownTransport ? "true" : "false",
        });
        var first = await RawMqttClient.OpenAsync(server);
        await using var second = await RawMqttClient.OpenAsync(server);
        try
        {
            await first.ConnectAsync(5, "cap-first");
            await second.ConnectAsync(4, "cap-second");

            // MQTT 5: CONNACK 0x97 (Quota exceeded) with the reason; 3.1.1: return code 0x03 (Server unavailable). Then closed.
            foreach (var (level, code) in new[] { ((byte)5, (byte)0x97), ((byte)4, (byte)0x03) })
            {
                await using var refused = await RawMqttClient.OpenAsync(server);
                await refused.SendAsync(RawMqttClient.Connect(level, "cap-refused-" + level));
                var connAck = Assert.Single(await refused.ReadUntilClosedAsync());
                Assert.Equal((byte)0x20, connAck.First);
                Assert.Equal(code, connAck.Body[1]);
                if (level == 5)
                {
                    Assert.Contains("Relay:Ingress:MaxConnections", Encoding.UTF8.GetString(connAck.Body), StringComparison.Ordinal);
                }
            }

            // A place freed is taken again (the close is counted out when the server sees it).
            await first.DisposeAsync();
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (true)
            {
                await using var again = await RawMqttClient.OpenAsync(server);
                await again.SendAsync(RawMqttClient.Connect(4, "cap-again"));
                if (await again.ReadPacketAsync() is { First: 0x20 } ack && ack.Body[1] == 0)
                {
                    break;
                }

                Assert.True(DateTime.UtcNow < deadline, "the closed MQTT connection's place was never freed");
                await Task.Delay(50);
            }
        }
        finally
        {
            await first.DisposeAsync();
        }
    }

    [Fact]
    public async Task MaxConnections_AboveWhatTheProcessMayOpen_StopsStartUp_NamingTheSetting()
    {
        var error = await Assert.ThrowsAnyAsync<Exception>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:MaxConnections"] = "2000000000" }));
        Assert.Contains("Relay:Ingress:MaxConnections", error.ToString(), StringComparison.Ordinal);
        Assert.Contains("raise the limit", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Reserve_IsAThirtySecondOfTheLimit_Between256And1024() =>
        Assert.Equal([256, 256, 625, 1024], new long[] { 800, 4096, 20_000, 1_048_576 }.Select(ConnectionGate.Reserve));

    private static async Task<string> RawGetAsync(RelayServer server, string path, bool upgrade)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, server.BaseAddress.Port), timeout.Token);
        var head = upgrade
            ? $"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            : $"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        await socket.SendAsync(Encoding.ASCII.GetBytes(head), SocketFlags.None, timeout.Token);
        var received = new MemoryStream();
        var buffer = new byte[4096];
        int read;
        while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
        {
            received.Write(buffer, 0, read);
        }

        return Encoding.UTF8.GetString(received.ToArray());
    }
}
