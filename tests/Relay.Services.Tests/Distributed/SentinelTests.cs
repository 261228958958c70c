using System.Text.Json;
using Relay.Bus.Redis;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// The Redis bus through Sentinel (<c>serviceName=</c>): the master is killed by its PID, the sentinels promote the
/// replica, the client follows, and publishing and subscribing go on with no acknowledged message lost.
/// </summary>
public sealed class SentinelTests(ITestOutputHelper output)
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    // Two replicas, as deployed: the promoted one has a replica again within seconds, so writes are refused only briefly
    // (with one, until the killed master came back and synced, which swept the ingress node in 2 runs of 4). A node
    // swept meanwhile registers again and checks its channels (WriteOutageTests).
    [Fact(Timeout = 120_000)]
    public async Task MasterKilled_ReplicaPromoted_PublishingAndSubscribingRecover_WithNoAcknowledgedMessageLost()
    {
        await using var sentinels = await RedisSentinelSet.StartAsync();
        var settings = Settings(sentinels);

        // A publish is acknowledged once the replica holds it too, so the promoted replica has every acknowledged one.
        settings["Relay:Redis:ReplicasToAcknowledge"] = "1";
        await using var server = await RelayServer.StartAsync(settings);
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "failover" })).GetProperty("type").GetString());

        var acknowledged = new List<long>();
        for (var n = 1; n <= 5; n++)
        {
            acknowledged.Add(await PublishUntilAcknowledgedAsync(publisher, n));
        }

        output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} killing the master (port {sentinels.Master.Port})");
        sentinels.Master.Kill();

        // A replica is promoted (and the other made its replica), then the old master comes back, empty, and the sentinels
        // make it a replica too: until the client has left it, each publish is answered 50300 (docs/distributed.md).
        var revived = Task.Run(async () =>
        {
            var promoted = await sentinels.WaitForPromotionAsync();
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} 127.0.0.1:{promoted.Port} promoted; restarting the old master");
            await sentinels.Master.RestartAsync();

            // Restarted empty, the old master answers as a master until the sentinels make it a replica, and the client
            // may read from it meanwhile (docs/distributed.md): history is read once it replicates the new master.
            await sentinels.WaitForReplicaInSyncAsync(sentinels.Master);
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} the old master replicates 127.0.0.1:{promoted.Port}");
        });
        for (var n = 6; n <= 15; n++)
        {
            acknowledged.Add(await PublishUntilAcknowledgedAsync(publisher, n));
        }

        await revived.WaitAsync(s_wait);

        // Every acknowledged publish kept its seq: the promoted replica continued the same epoch, gapless.
        Assert.Equal(Enumerable.Range(1, 15).Select(static i => (long)i), acknowledged);

        // The subscriber gets every message, once, in order (live, or read back from history after the failover).
        var received = new List<(long Seq, int N)>();
        var deadline = DateTime.UtcNow + s_wait;
        while ((received.Count == 0 || received[^1].Seq < 15) && DateTime.UtcNow < deadline)
        {
            var message = await subscriber.ReceiveMessageAsync(s_wait);
            received.Add((message.GetProperty("seq").GetInt64(), message.GetProperty("data").GetProperty("n").GetInt32()));
        }

        Assert.Equal(Enumerable.Range(1, 15).Select(static i => ((long)i, i)), received);

        // History on the new master holds all of them.
        var history = await RequestUntilAnsweredAsync(publisher, new() { ["type"] = "history", ["channel"] = "failover", ["limit"] = 100 });
        Assert.Equal(Enumerable.Range(1, 15), history.GetProperty("messages").EnumerateArray().Select(static m => m.GetProperty("data").GetProperty("n").GetInt32()));
    }

    // SENTINEL FAILOVER demotes the master in place; the sentinels close its clients, which reconnect to it. The bus's
    // subscriptions go through a multiplexer pinned to the master the sentinels name (RedisBus.Sentinel.cs), moved to
    // the new master by closing it and subscribing again, so none can stay on the demoted one.
    [Fact(Timeout = 120_000)]
    public async Task ManualFailover_SubscriptionsLeftOnTheDemotedMaster_MoveToTheNewMaster_PublishingAndSubscribingGoOn()
    {
        await using var sentinels = await RedisSentinelSet.StartAsync();
        var settings = Settings(sentinels);
        await using var server = await RelayServer.StartAsync(settings);
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "switched" })).GetProperty("type").GetString());
        for (var n = 1; n <= 3; n++)
        {
            Assert.Equal(n, await PublishUntilAcknowledgedAsync(publisher, n, "switched"));
        }

        var promoted = await sentinels.FailoverAsync();
        output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} failed over to 127.0.0.1:{promoted.Port}");
        await WriteSubscriptionsAsync(sentinels.Master, promoted);

        // Within the retry deadline every publish is acknowledged, in order, on the new master.
        for (var n = 4; n <= 10; n++)
        {
            Assert.Equal(n, await PublishUntilAcknowledgedAsync(publisher, n, "switched", TimeSpan.FromSeconds(20)));
        }

        var received = new List<(long Seq, int N)>();
        var deadline = DateTime.UtcNow + s_wait;
        while ((received.Count == 0 || received[^1].Seq < 10) && DateTime.UtcNow < deadline)
        {
            var message = await subscriber.ReceiveMessageAsync(s_wait);
            received.Add((message.GetProperty("seq").GetInt64(), message.GetProperty("data").GetProperty("n").GetInt32()));
        }

        Assert.Equal(Enumerable.Range(1, 10).Select(static i => ((long)i, i)), received);

        // And the bus listens on the master only: nothing of it is left on the demoted one (where PUBLISH on the master
        // counts no listener, and what replication forwards would arrive twice).
        var left = await RedisSentinelSet.SubscribedChannelsAsync(sentinels.Master);
        for (var i = 0; i < 100 && left.Any(static c => c.StartsWith(RedisBus.Prefix, StringComparison.Ordinal)); i++)
        {
            await Task.Delay(100);
            left = await RedisSentinelSet.SubscribedChannelsAsync(sentinels.Master);
        }

        await WriteSubscriptionsAsync(sentinels.Master, promoted);
        Assert.DoesNotContain(left, static c => c.StartsWith(RedisBus.Prefix, StringComparison.Ordinal));
        Assert.Contains(await RedisSentinelSet.SubscribedChannelsAsync(promoted), static c => c.Contains("reply", StringComparison.Ordinal));
    }

    private async Task WriteSubscriptionsAsync(RedisServer oldMaster, RedisServer newMaster)
    {
        output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} subscribed on the old master: {string.Join(' ', await RedisSentinelSet.SubscribedChannelsAsync(oldMaster))}");
        output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} subscribed on the new master: {string.Join(' ', await RedisSentinelSet.SubscribedChannelsAsync(newMaster))}");
    }

    [Fact(Timeout = 120_000)]
    public async Task MasterKilledWhileTheReplicaLags_APublishTheReplicaNeverGot_WasNotAcknowledged_AndIsNotLost()
    {
        // One replica: the one that lags is the one promoted.
        await using var sentinels = await RedisSentinelSet.StartAsync(replicas: 1);
        var settings = Settings(sentinels);
        settings["Relay:Redis:ReplicasToAcknowledge"] = "1";
        settings["Relay:Redis:ReplicationTimeout"] = "00:00:00.5";
        await using var server = await RelayServer.StartAsync(settings);
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var acknowledged = new Dictionary<int, long>();
        for (var n = 1; n <= 3; n++)
        {
            acknowledged[n] = await PublishUntilAcknowledgedAsync(publisher, n, "lagging");
        }

        // The replica stops taking the stream: the master appends publish 4, but no replica confirms it in time. (Its
        // kernel still buffers the stream, which the replica applies once resumed: this test passes without
        // ReplicasToAcknowledge too; it checks what was acknowledged survives, not what WAIT adds.)
        sentinels.Replica.Pause();
        var fourth = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "lagging", ["id"] = "lagging-4", ["data"] = new { n = 4 } });
        output.WriteLine("publish 4 with the replica paused: " + fourth.GetRawText());
        if (fourth.GetProperty("type").GetString() == "ok")
        {
            acknowledged[4] = fourth.GetProperty("seq").GetInt64();
        }

        // The master dies with publish 4; the replica, which never got it, is promoted.
        sentinels.Master.Kill();
        sentinels.Replica.Resume();
        var revived = Task.Run(async () =>
        {
            await sentinels.WaitForMasterAsync(sentinels.Replica);
            await sentinels.Master.RestartAsync();

            // Restarted empty, the old master answers as a master until the sentinels make it a replica: history is
            // read once it replicates the new one (read before, it found nothing for publish 1 in one CI run).
            await sentinels.WaitForReplicaInSyncAsync(sentinels.Master);
        });
        for (var n = acknowledged.ContainsKey(4) ? 5 : 4; n <= 8; n++)
        {
            acknowledged[n] = await PublishUntilAcknowledgedAsync(publisher, n, "lagging");
        }

        await revived.WaitAsync(s_wait);

        // Every acknowledged publish is in the new master's history under the seq it was acknowledged with.
        var history = await publisher.RequestAsync(new() { ["type"] = "history", ["channel"] = "lagging", ["limit"] = 100 });
        var kept = history.GetProperty("messages").EnumerateArray().ToDictionary(static m => m.GetProperty("data").GetProperty("n").GetInt32(), static m => m.GetProperty("seq").GetInt64());
        foreach (var (n, seq) in acknowledged.OrderBy(static a => a.Key))
        {
            Assert.True(kept.TryGetValue(n, out var keptSeq) && keptSeq == seq, $"publish {n} was acknowledged with seq {seq}, and the new master has {(kept.TryGetValue(n, out var s) ? "seq " + s : "nothing")} for it");
        }

        Assert.Equal(Enumerable.Range(1, 8), kept.Keys.Order());
    }

    // A request sent again while it is answered 50300, within 30 s: the switch is not over (one history read after the
    // kill got NOREPLICAS from the restarted old master, which the client still sent commands to).
    private async Task<JsonElement> RequestUntilAnsweredAsync(TestSocket socket, Dictionary<string, object?> request)
    {
        var deadline = DateTime.UtcNow + s_wait;
        while (true)
        {
            var reply = await socket.RequestAsync(new(request));
            if (reply.GetProperty("type").GetString() != "error" || reply.GetProperty("code").GetInt32() != 50300 || DateTime.UtcNow > deadline)
            {
                return reply;
            }

            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {request["type"]} not answered: {reply.GetRawText()}");
            await Task.Delay(200);
        }
    }

    // Publishes with an id, again until acknowledged: a publish that failed over the failover may or may not have been
    // appended, and the id makes the retry answer with the seq it got.
    private async Task<long> PublishUntilAcknowledgedAsync(TestSocket publisher, int n, string channel = "failover", TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(45));
        while (true)
        {
            JsonElement reply;
            try
            {
                reply = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["id"] = $"{channel}-{n}", ["data"] = new { n } });
            }
            catch (TimeoutException) when (DateTime.UtcNow < deadline)
            {
                continue;
            }

            if (reply.GetProperty("type").GetString() == "ok")
            {
                return reply.GetProperty("seq").GetInt64();
            }

            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} publish {n} not acknowledged: {reply.GetRawText()}");
            Assert.True(DateTime.UtcNow < deadline, $"publish {n} was never acknowledged: {reply.GetRawText()}");
            await Task.Delay(200);
        }
    }

    /// <summary>The server on the Redis bus through the sentinels, with lease and request times short enough for a failover.</summary>
    private static Dictionary<string, string?> Settings(RedisSentinelSet sentinels)
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Configuration"] = sentinels.Configuration;
        settings["Relay:Redis:LeaseTtl"] = "00:00:02";
        settings["Relay:Redis:RequestTimeout"] = "00:00:05";
        settings["Relay:Redis:CommandTimeout"] = "00:00:02";
        return settings;
    }
}
