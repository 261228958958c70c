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
