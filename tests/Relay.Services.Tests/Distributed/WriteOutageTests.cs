using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Relay.Bus.Redis;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// Redis refusing writes (here <c>min-replicas-to-write 1</c> with no replica: NOREPLICAS, as a Sentinel master without
/// a replica answers; OOM or a failover refuse them too) for longer than <c>NodeTtl</c>: the node's heartbeats are
/// refused, fan-out sweeps it as gone once writes succeed again, and the node must come back by itself (heartbeat,
/// interest) and deliver what was published meanwhile.
/// </summary>
public sealed class WriteOutageTests(ITestOutputHelper output)
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(20);

    [Fact(Timeout = 120_000)]
    public async Task WritesRefusedLongerThanNodeTtl_NodeSweptWhenWritesComeBack_SubscriberReceivesWhatWasPublished()
    {
        await using var redis = await RedisServer.StartAsync();
        var settings = ServerFixture.Settings();
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Configuration"] = redis.Configuration;
        settings["Relay:Redis:LeaseTtl"] = "00:00:02";
        settings["Relay:Redis:RequestTimeout"] = "00:00:08";
        settings["Relay:Redis:CommandTimeout"] = "00:00:01";

        // A heartbeat every 5 s and a fan-out tick (which sweeps) every second: once writes come back, the sweep mostly
        // comes first, and the node is gone from Redis for up to 5 s before its next heartbeat. (FanOutLeaseTtl stays
        // 3 s: with 0.6 s its lease lapsed now and then on a busy machine, and each lapse resyncs the nodes, which hid
        // the missed message.)
        settings["Relay:Redis:NodeTtl"] = "00:00:15";

        // What is tested is the resync when the node registers again; the quiet check would read the message back first.
        settings["Relay:Ingress:QuietCheckAfter"] = "00:00:00";
        await using var server = await RelayServer.StartAsync(settings);
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "outage" })).GetProperty("type").GetString());
        Assert.Equal(1, await PublishUntilAcknowledgedAsync(publisher, 1));
        Assert.Equal(1, (await subscriber.ReceiveMessageAsync(s_wait)).GetProperty("seq").GetInt64());
        var node = await RegisteredNodeAsync(redis);

        // The channel was last written under a later fencing token than this routing instance holds (as when another
        // instance took the shard, wrote and went away), then writes are refused for longer than NodeTtl.
        var position = (string)RedisKeys.Position(RedisKeys.ChannelPrefix(RelayServer.AppId, "outage"))!;
        var fence = (await RedisCommand.SendAsync(redis.Port, "HGET", position, "fence")).Split("\r\n");
        Assert.True(fence.Length >= 2 && long.TryParse(fence[1], out _), "the channel's fencing token: " + string.Join(' ', fence));
        Assert.StartsWith(":", await RedisCommand.SendAsync(redis.Port, "HSET", position, "fence", (long.Parse(fence[1], CultureInfo.InvariantCulture) + 1).ToString(CultureInfo.InvariantCulture)), StringComparison.Ordinal);
        Assert.StartsWith("+OK", await RedisCommand.SendAsync(redis.Port, "CONFIG", "SET", "min-replicas-to-write", "1"), StringComparison.Ordinal);
        var outage = Stopwatch.StartNew();

        // Once the routing lease ran out (LeaseTtl), a publish is fenced out and its claim on the shard refused: each is
        // told at once (50300), not left to wait out RequestTimeout (8 s here).
        await Task.Delay(TimeSpan.FromSeconds(2.5));
        for (var i = 0; i < 10; i++)
        {
            var asked = Stopwatch.StartNew();
            var refused = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "outage", ["id"] = $"refused-{i}", ["data"] = new { i } });
            output.WriteLine($"publish during the outage, answered in {asked.ElapsedMilliseconds} ms: {refused.GetRawText()}");
            Assert.Equal(50300, refused.GetProperty("code").GetInt32());
            Assert.True(asked.Elapsed < TimeSpan.FromSeconds(5), $"a refused publish was answered after {asked.Elapsed.TotalSeconds:0.0} s");
        }

        await Task.Delay(TimeSpan.FromSeconds(Math.Max(0, 16.5 - outage.Elapsed.TotalSeconds)));
        Assert.StartsWith("+OK", await RedisCommand.SendAsync(redis.Port, "CONFIG", "SET", "min-replicas-to-write", "0"), StringComparison.Ordinal);

        // Publish while the node is swept and not yet back, when that moment is seen (it normally is).
        var swept = false;
        for (var i = 0; i < 200 && !swept; i++)
        {
            swept = (await RedisCommand.SendAsync(redis.Port, "ZSCORE", (string)RedisKeys.Nodes!, node)).StartsWith("$-1", StringComparison.Ordinal);
            if (!swept)
            {
                await Task.Delay(20);
            }
        }

        output.WriteLine(swept ? $"published while the node was swept ({outage.ElapsedMilliseconds} ms after the outage began)" : "the node was not seen swept");
        Assert.Equal(2, await PublishUntilAcknowledgedAsync(publisher, 2));

        // The node registers again and delivers it (and what follows).
        Assert.Equal(2, (await subscriber.ReceiveMessageAsync(s_wait)).GetProperty("seq").GetInt64());
        Assert.Equal(3, await PublishUntilAcknowledgedAsync(publisher, 3));
        Assert.Equal(3, (await subscriber.ReceiveMessageAsync(s_wait)).GetProperty("seq").GetInt64());
        Assert.False((await RedisCommand.SendAsync(redis.Port, "ZSCORE", (string)RedisKeys.Nodes!, node)).StartsWith("$-1", StringComparison.Ordinal), "the node is not registered again");
    }

    private static async Task<string> RegisteredNodeAsync(RedisServer redis)
    {
        var reply = (await RedisCommand.SendAsync(redis.Port, "ZRANGE", (string)RedisKeys.Nodes!, "0", "-1")).Split("\r\n");
        Assert.True(reply.Length >= 3 && reply[0] == "*1", "one node registered: " + string.Join(' ', reply));
        return reply[2];
    }

    private async Task<long> PublishUntilAcknowledgedAsync(TestSocket publisher, int n)
    {
        var deadline = DateTime.UtcNow + s_wait;
        while (true)
        {
            JsonElement reply;
            try
            {
                reply = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "outage", ["id"] = $"outage-{n}", ["data"] = new { n } });
            }
            catch (TimeoutException) when (DateTime.UtcNow < deadline)
            {
                continue;
            }

            if (reply.GetProperty("type").GetString() == "ok")
            {
                return reply.GetProperty("seq").GetInt64();
            }

            output.WriteLine($"publish {n} not acknowledged: {reply.GetRawText()}");
            Assert.True(DateTime.UtcNow < deadline, $"publish {n} was never acknowledged: {reply.GetRawText()}");
            await Task.Delay(100);
        }
    }
}
