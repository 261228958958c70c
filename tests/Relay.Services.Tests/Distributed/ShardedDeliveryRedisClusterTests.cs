using System.Globalization;
using Relay.Testing;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// On a Redis Cluster, deliveries to ingress nodes go on sharded channels: a batch goes to its channel's master only,
/// not over the cluster bus to every master as a plain PUBLISH does. Counted with the masters' own figure of plain
/// publishes they forwarded over the cluster bus (<c>cluster_stats_messages_publish_sent</c>).
/// </summary>
public sealed class ShardedDeliveryRedisClusterTests
{
    private const int Messages = 200;

    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(10);

    [Fact(Timeout = 120_000)]
    public async Task DeliveriesToANode_OnACluster_AreNotCopiedToEveryMaster()
    {
        await using var cluster = await RedisClusterSet.StartAsync();
        var settings = ServerFixture.Settings();
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Configuration"] = cluster.Configuration;
        await using var server = await RelayServer.StartAsync(settings);
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "sharded:delivery" });
        Assert.True(subscribed.GetProperty("type").GetString() == "ok", subscribed.GetRawText());

        // One publish at a time, each received before the next, so every message is a batch of its own.
        var before = await PublishesForwardedAsync(cluster);
        for (var n = 1; n <= Messages; n++)
        {
            var ack = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "sharded:delivery", ["data"] = n });
            Assert.True(ack.GetProperty("type").GetString() == "ok", ack.GetRawText());
            var message = await subscriber.ReceiveMessageAsync(s_wait);
            Assert.Equal(n, message.GetProperty("data").GetInt32());
        }

        // The append's PUBLISH to fan-out's shard channel and routing's reply to the node are plain publishes, each
        // forwarded to both other masters (4 a message; 800 measured); a node's batch on a plain channel added 2 more
        // (1,200 measured before deliveries were sharded).
        var forwarded = await PublishesForwardedAsync(cluster) - before;
        Assert.True(forwarded < 5 * Messages, $"{forwarded} plain publishes were forwarded over the cluster bus for {Messages} messages: deliveries to the node were copied to every master");
    }

    // What every master says it forwarded over the cluster bus of plain PUBLISHes, in all.
    private static async Task<long> PublishesForwardedAsync(RedisClusterSet cluster)
    {
        long total = 0;
        foreach (var server in cluster.Servers)
        {
            var info = await RedisCommand.SendAsync(server.Port, "CLUSTER", "INFO");
            var line = info.Split("\r\n").FirstOrDefault(static l => l.StartsWith("cluster_stats_messages_publish_sent:", StringComparison.Ordinal));
            total += line is null ? 0 : long.Parse(line.AsSpan(line.IndexOf(':') + 1), NumberStyles.None, CultureInfo.InvariantCulture);
        }

        return total;
    }
}
