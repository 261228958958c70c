using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Relay.Redis.Internal;

namespace Relay.Redis.Tests;

/// <summary>The <c>Relay.Redis</c> meter, recorded through a real host meter factory against a real server.</summary>
public class MetricsTests(RedisServerFixture fixture) : IClassFixture<RedisServerFixture>
{
    private const string Commands = "relay.redis.commands";
    private const string Errors = "relay.redis.errors";
    private const string Reconnects = "relay.redis.reconnects";
    private const string Connected = "relay.redis.connected";
    private const string RoundTrip = "relay.redis.round_trip";

    private static ServiceProvider Host() => new ServiceCollection().AddMetrics().BuildServiceProvider();

    [Fact]
    public void MeterFactory_IsKeptByTheValidatedCopy_AndNoneMeansNoMetrics()
    {
        using var host = Host();
        var meters = host.GetRequiredService<IMeterFactory>();
        Assert.Same(meters, new RedisConnectionOptions { MeterFactory = meters }.ValidatedCopy().MeterFactory);
        Assert.Same(RedisMetrics.For(new RedisConnectionOptions { MeterFactory = meters }), RedisMetrics.For(new RedisConnectionOptions { MeterFactory = meters }));
        Assert.Null(RedisMetrics.For(new RedisConnectionOptions()));
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Commands_EachOneCountedAndTimed_ConnectedIsOne(bool resp3)
    {
        using var host = Host();
        var meters = host.GetRequiredService<IMeterFactory>();
        using var probe = new MetricsProbe(meters);
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3, o => o.MeterFactory = meters));
        Assert.Same(meters, redis.Options.MeterFactory);

        // The handshake (PING, or HELLO 3) is a command too.
        var before = probe.Read(Commands, "command");
        Assert.Equal(1, before);
        var key = $"metrics:{Guid.NewGuid():N}";
        await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => redis.IncrAsync(key)));

        Assert.Equal(before + 50, probe.Read(Commands, "command"));
        Assert.Equal(before + 50, probe.Recorded(RoundTrip, "command"));
        Assert.Equal(1, probe.Read(Connected, "command"));
        Assert.Equal(0, probe.Read(Reconnects, "command"));
        foreach (var kind in RedisMetrics.ErrorKindNames)
        {
            Assert.Equal(0, probe.Read(Errors, "command", kind));
        }
    }

    [Fact(Timeout = 20_000)]
    public async Task WrongTypeReply_CountsOneErrorReply()
    {
        using var host = Host();
        var meters = host.GetRequiredService<IMeterFactory>();
        using var probe = new MetricsProbe(meters);
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(configure: o => o.MeterFactory = meters));
        var key = $"metrics:wrongtype:{Guid.NewGuid():N}";
        await redis.SetAsync(key, "a string");

        var error = await Assert.ThrowsAsync<RedisServerException>(() => redis.ExecuteAsync("LPUSH", key, "x"));
        Assert.Equal("WRONGTYPE", error.ErrorCode);

        Assert.Equal(1, probe.Read(Errors, "command", "error_reply"));
        Assert.Equal(3, probe.Read(Commands, "command"));
        Assert.Equal(1, probe.Read(Connected, "command"));
    }

    [Fact(Timeout = 20_000)]
    public async Task ClientKill_CountsTheLostConnectionAndTheReconnect()
    {
        using var host = Host();
        var meters = host.GetRequiredService<IMeterFactory>();
        using var probe = new MetricsProbe(meters);
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(configure: o => o.MeterFactory = meters));
        await using var admin = await RedisConnection.ConnectAsync(fixture.Server.Options());
        var id = (await redis.ExecuteAsync("CLIENT", "ID")).AsInt64();

        Assert.Equal(1, (await admin.ExecuteAsync("CLIENT", "KILL", "ID", id)).AsInt64());

        await probe.UntilAsync(Reconnects, "command", null, static n => n == 1, "the reconnect to be counted");
        await Wait.UntilAsync(async () => await redis.IncrAsync($"metrics:kill:{Guid.NewGuid():N}") == 1, TimeSpan.FromSeconds(10), "INCR after the reconnect");
        Assert.Equal(1, probe.Read(Errors, "command", "connection_lost"));
        Assert.Equal(1, probe.Read(Connected, "command"));
        Assert.Equal(0, probe.Read(Errors, "command", "error_reply"));
    }

    [Fact(Timeout = 30_000)]
    public async Task ServerKilledAndRestarted_ConnectedDropsToZero_FailuresAndReconnectsCounted()
    {
        await using var server = await RedisServer.StartAsync();
        using var host = Host();
        var meters = host.GetRequiredService<IMeterFactory>();
        using var probe = new MetricsProbe(meters);
        await using var redis = await RedisConnection.ConnectAsync(server.Options(configure: o =>
        {
            o.MeterFactory = meters;
            o.CommandTimeout = TimeSpan.FromMilliseconds(300);
        }));
        await using var subscriber = await RedisSubscriber.ConnectAsync(server.Options(configure: o => o.MeterFactory = meters));
        await subscriber.SubscribeAsync("news");

        // PING handshake, then SUBSCRIBE: both written on the subscriber's socket.
        Assert.Equal(2, probe.Read(Commands, "subscriber"));
        Assert.Equal(1, probe.Read(Connected, "command"));
        Assert.Equal(1, probe.Read(Connected, "subscriber"));

        server.Kill();
        await probe.UntilAsync(Connected, "command", null, static n => n == 0, "the command connection to count as down");
        await probe.UntilAsync(Connected, "subscriber", null, static n => n == 0, "the subscriber to count as down");
        Assert.Equal(1, probe.Read(Errors, "command", "connection_lost"));
        Assert.Equal(1, probe.Read(Errors, "subscriber", "connection_lost"));
        await probe.UntilAsync(Errors, "command", "connect_failed", static n => n > 0, "failed reconnect attempts to be counted");

        // A command that waits longer than its timeout for the reconnect.
        await Assert.ThrowsAsync<TimeoutException>(() => redis.PingAsync());
        Assert.Equal(1, probe.Read(Errors, "command", "timeout"));

        await server.RestartAsync();
        await probe.UntilAsync(Reconnects, "command", null, static n => n == 1, "the command connection's reconnect");
        await probe.UntilAsync(Reconnects, "subscriber", null, static n => n == 1, "the subscriber's reconnect");
        Assert.Equal(1, probe.Read(Connected, "command"));
        Assert.Equal(1, probe.Read(Connected, "subscriber"));

        await subscriber.DisposeAsync();
        Assert.Equal(0, probe.Read(Connected, "subscriber"));
    }
}
