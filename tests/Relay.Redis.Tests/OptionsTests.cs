using System.Net;
using System.Net.Sockets;

namespace Relay.Redis.Tests;

public class OptionsTests
{
    [Fact]
    public void Defaults_AreValid() => Assert.Empty(new RedisConnectionOptions().Validate());

    [Fact]
    public void EveryProblem_IsNamed()
    {
        var errors = new RedisConnectionOptions
        {
            Host = " ",
            Port = 0,
            Username = "alice",
            Database = -1,
            CommandTimeout = TimeSpan.Zero,
            ConnectTimeout = Timeout.InfiniteTimeSpan,
            ReconnectMinDelay = TimeSpan.FromSeconds(5),
            ReconnectMaxDelay = TimeSpan.FromSeconds(1),
            TlsTargetHost = "example",
        }.Validate();

        Assert.Contains(errors, e => e.Contains("Host", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Port must be between 1 and 65535 (was 0)", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Username needs a Password", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("Database must be 0 or more", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("CommandTimeout", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("ConnectTimeout", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("ReconnectMaxDelay", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("only apply with Tls = true", StringComparison.Ordinal));
    }

    [Fact(Timeout = 20_000)]
    public async Task ConnectAsync_InvalidOptions_ThrowsBeforeConnecting()
    {
        var error = await Assert.ThrowsAsync<ArgumentException>(() => RedisConnection.ConnectAsync(new RedisConnectionOptions { Port = 70000 }));
        Assert.Contains("Port must be between 1 and 65535 (was 70000)", error.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 20_000)]
    public async Task ConnectAsync_NothingListening_FailsWithTheEndpoint()
    {
        int port;
        using (var listener = new TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        var error = await Assert.ThrowsAsync<RedisConnectionException>(() =>
            RedisConnection.ConnectAsync(new RedisConnectionOptions { Host = "127.0.0.1", Port = port }));
        Assert.Contains($"127.0.0.1:{port}", error.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 20_000)]
    public async Task ConnectAsync_ServerThatNeverAnswers_TimesOut()
    {
        // Accepts the socket but never replies: the handshake PING is bounded by ConnectTimeout.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var error = await Assert.ThrowsAsync<TimeoutException>(() => RedisConnection.ConnectAsync(
            new RedisConnectionOptions { Host = "127.0.0.1", Port = port, ConnectTimeout = TimeSpan.FromMilliseconds(300) }));
        Assert.Contains("300 ms", error.Message, StringComparison.Ordinal);
    }
}
