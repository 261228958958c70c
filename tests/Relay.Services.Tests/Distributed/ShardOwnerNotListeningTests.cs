using System.Diagnostics;
using System.Globalization;
using Relay.Bus.Redis;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// After Redis restarts, routing shards change hands: an instance can take a shard's lease and not be subscribed to its
/// requests yet, while the former owner still is. A request then reaches only the former owner, which is fenced out and
/// cannot claim the shard (it is held). It must not be dropped there, leaving the caller to wait out RequestTimeout: the
/// former owner declines it, the caller sends it again, and it is answered once the lease's holder listens or the lease
/// runs out. Here the holder is an instance id nobody serves (as a new owner not subscribed yet, or one that died).
/// </summary>
public sealed class ShardOwnerNotListeningTests(ITestOutputHelper output)
{
    private const string Channel = "handover";
    private const int Publishers = 10;

    // The ghost's lease; the routing instance takes the shard back on its first tick after that (every LeaseTtl / 3).
    private static readonly TimeSpan GhostLease = TimeSpan.FromSeconds(3);

    // Well under RequestTimeout (20 s): the ghost's lease, a lease tick and margin for a busy machine.
    private static readonly TimeSpan AnsweredWithin = TimeSpan.FromSeconds(9);

    [Fact(Timeout = 120_000)]
    public async Task FencedPublish_ShardHeldByAnInstanceNotListening_IsSentAgainAndAnsweredWhenTheLeaseMoves()
    {
        await using var redis = await RedisServer.StartAsync();
        var settings = ServerFixture.Settings();
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Configuration"] = redis.Configuration;
        settings["Relay:Redis:LeaseTtl"] = "00:00:03";
        settings["Relay:Redis:RequestTimeout"] = "00:00:20";
        await using var server = await RelayServer.StartAsync(settings);
        var publishers = new List<TestSocket>();
        try
        {
            for (var i = 0; i < Publishers; i++)
            {
                publishers.Add(await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key)));
            }

            var first = await publishers[0].RequestAsync(new() { ["type"] = "publish", ["channel"] = Channel, ["id"] = "first", ["data"] = 0 });
            Assert.Equal(1, first.GetProperty("seq").GetInt64());

            // Another instance takes the shard and writes to the channel (its lease and a later fencing token), and is
            // not subscribed to the shard's requests: the routing instance here still is, until its next tick.
            var shard = RedisBus.ShardOf(RelayServer.AppId, Channel, 16);
            var lease = (string)RedisKeys.Lease(shard)!;
            var position = (string)RedisKeys.Position(RedisKeys.ChannelPrefix(RelayServer.AppId, Channel))!;
            var fence = (await RedisCommand.SendAsync(redis.Port, "HGET", position, "fence")).Split("\r\n");
            Assert.True(fence.Length >= 2 && long.TryParse(fence[1], out _), "the channel's fencing token: " + string.Join(' ', fence));
            var ghostToken = (long.Parse(fence[1], CultureInfo.InvariantCulture) + 1).ToString(CultureInfo.InvariantCulture);
            Assert.StartsWith("+OK", await RedisCommand.SendAsync(redis.Port, "SET", lease, "ghost", "PX", ((long)GhostLease.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)), StringComparison.Ordinal);
            Assert.StartsWith(":", await RedisCommand.SendAsync(redis.Port, "HSET", (string)RedisKeys.Fences!, shard.ToString(CultureInfo.InvariantCulture), ghostToken), StringComparison.Ordinal);
            Assert.StartsWith(":", await RedisCommand.SendAsync(redis.Port, "HSET", position, "fence", ghostToken), StringComparison.Ordinal);

            // Ten publishes at once, each with an id: every one is acknowledged, once, within a few seconds.
            var started = Stopwatch.StartNew();
            var acks = await Task.WhenAll(publishers.Select(async (publisher, i) =>
            {
                var ack = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = Channel, ["id"] = $"p{i}", ["data"] = i });
                return (Ack: ack, Took: started.Elapsed);
            }));
            foreach (var (ack, took) in acks)
            {
                output.WriteLine($"answered after {took.TotalMilliseconds:0} ms: {ack.GetRawText()}");
                Assert.True(ack.GetProperty("type").GetString() == "ok", ack.GetRawText());
                Assert.True(took < AnsweredWithin, $"a publish was answered after {took.TotalSeconds:0.0} s");
            }

            Assert.Equal(Enumerable.Range(2, Publishers).Select(static s => (long)s), acks.Select(static a => a.Ack.GetProperty("seq").GetInt64()).Order());
        }
        finally
        {
            foreach (var publisher in publishers)
            {
                await publisher.DisposeAsync();
            }
        }
    }
}
