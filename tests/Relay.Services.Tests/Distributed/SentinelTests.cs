using System.Text.Json;
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

    [Fact(Timeout = 120_000)]
    public async Task MasterKilled_ReplicaPromoted_PublishingAndSubscribingRecover_WithNoAcknowledgedMessageLost()
    {
        await using var sentinels = await RedisSentinelSet.StartAsync();
        var settings = ServerFixture.Settings();
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Configuration"] = sentinels.Configuration;
        settings["Relay:Redis:LeaseTtl"] = "00:00:02";
        settings["Relay:Redis:RequestTimeout"] = "00:00:05";
        settings["Relay:Redis:CommandTimeout"] = "00:00:02";

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

        output.WriteLine($"killing the master (port {sentinels.Master.Port})");
        sentinels.Master.Kill();

        // Once the replica is promoted, the old master comes back (empty) and the sentinels make it the new master's
        // replica: until then no publish can be confirmed by a replica, and each is answered 50300.
        var revived = Task.Run(async () =>
        {
            await sentinels.WaitForMasterAsync(sentinels.Replica);
            output.WriteLine("replica promoted; restarting the old master");
            await sentinels.Master.RestartAsync();
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
        var history = await publisher.RequestAsync(new() { ["type"] = "history", ["channel"] = "failover", ["limit"] = 100 });
        Assert.Equal(Enumerable.Range(1, 15), history.GetProperty("messages").EnumerateArray().Select(static m => m.GetProperty("data").GetProperty("n").GetInt32()));
    }

    // Publishes with an id, again until acknowledged: a publish that failed over the failover may or may not have been
    // appended, and the id makes the retry answer with the seq it got.
    private async Task<long> PublishUntilAcknowledgedAsync(TestSocket publisher, int n)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(45);
        while (true)
        {
            JsonElement reply;
            try
            {
                reply = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "failover", ["id"] = $"failover-{n}", ["data"] = new { n } });
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
            await Task.Delay(200);
        }
    }
}
