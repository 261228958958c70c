using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Relay.Bus.Redis;
using Relay.Ingress;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// The Redis bus over a three-master Redis Cluster resharded under load: publishers on one Relay server keep three busy
/// channels at over a thousand acknowledged publishes a second while each channel's slot, the slot of the subscribing
/// node's (sharded) delivery channel, and then the bus slot (leases, fencing tokens, nodes' interest), is moved live to
/// another master (<see cref="RedisClusterSet.MoveSlotAsync"/>);
/// subscribers on a second Relay server over the same Cluster read on. Nothing acknowledged is lost or moved, each
/// channel's history stays gapless in its epoch, subscribers get every seq once and in order, recovery with since works
/// after the move, and a subscription made after the bus slot moved is delivered to.
/// </summary>
public sealed class ReshardRedisClusterTests(ITestOutputHelper output)
{
    private const int Publishers = 4;

    // Publishes each publisher keeps in flight at most (as ClusterFailoverTests, where 4 x 64 keeps the slow end above 1,000 a second).
    private const int Window = 64;

    // Publishes a second each publisher sends at most: 4 x 500 is twice the 1,000 a second asserted, and keeps the
    // history (HistorySize 100,000) and the idempotency records a slot move carries (two minutes' worth) bounded.
    private const int PerPublisherPerSecond = 500;

    // Keys per MIGRATE: a hundred moves a busy channel's few thousand keys (mostly idempotency records) in about a second
    // here, long enough for the load to meet every stage of the move, and still splits a channel's keys between batches.
    private const int KeysPerMigrate = 100;

    private static readonly string[] s_channels = ["busy:reshard-a", "busy:reshard-b", "busy:reshard-c"];

    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Fact(Timeout = 180_000)]
    public async Task SlotsOfBusyChannelsAndTheBusMovedUnderLoad_NoAcknowledgedPublishLost_OrderKept_HistoryAndRecoveryComplete()
    {
        await using var cluster = await RedisClusterSet.StartAsync();
        var settings = ServerFixture.Settings();
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Configuration"] = cluster.Configuration;
        settings["Relay:Redis:LeaseTtl"] = "00:00:02";
        settings["Relay:Redis:RequestTimeout"] = "00:00:05";
        settings["Relay:Redis:CommandTimeout"] = "00:00:02";
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        settings["Relay:Namespaces:Rules:busy:HistorySize"] = "100000";
        var capture = new LogCapture();
        await using var publishingNode = await RelayServer.StartAsync(settings, s => s.AddLogging(b => b.AddProvider(capture)));
        await using var subscribingNode = await RelayServer.StartAsync(settings, s => s.AddLogging(b => b.AddProvider(capture)));

        var subscriber = await TestSocket.ConnectAsync(subscribingNode.RealtimeUriWithKey(RelayServer.Key, "sub"));
        var epochs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var channel in s_channels)
        {
            var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
            Assert.True(subscribed.GetProperty("type").GetString() == "ok", subscribed.GetRawText());
            epochs[channel] = subscribed.GetProperty("epoch").GetString()!;
        }

        using var stopReading = new CancellationTokenSource();
        var received = new LoadSubscriber(subscribingNode, epochs, output.WriteLine);
        var reading = Task.Run(() => received.ReadAsync(subscriber, stopReading.Token));

        var load = new PublishLoad(publishingNode, s_channels) { Window = Window, PerSecond = PerPublisherPerSecond };
        var clock = load.Clock;
        using var stop = new CancellationTokenSource();
        var publishing = load.Start(Publishers, stop.Token);

        // Steady load first, at a measured rate: the two servers share routing's and fan-out's shards in their first
        // seconds (a handover), so the rate is taken over the last second once it holds.
        var rate = 0;
        await WaitUntilAsync(() =>
        {
            var now = clock.Elapsed;
            rate = load.CountAcknowledged(a => a.At > now - TimeSpan.FromSeconds(1));

            return rate >= 1000 && now > TimeSpan.FromSeconds(3);
        }, "a steady load of 1,000 acknowledged publishes a second", () => $"the last second had {rate}");
        output.WriteLine($"{clock.ElapsedMilliseconds} ms: steady at {rate} acknowledged publishes/s over {s_channels.Length} channels");

        // History is read all along on the other node (as a subscriber recovering would): every read is answered.
        using var stopHistory = new CancellationTokenSource();
        var historyReads = Task.Run(() => ReadHistoryAlongAsync(subscribingNode, stopHistory.Token));

        // Each busy channel's slot to the next master, then the bus slot; the load goes on meanwhile.
        var masters = await cluster.MastersAsync();
        // The subscribing node's delivery channel is a sharded channel on a Cluster: its slot moves too (the old master
        // ends the node's subscription, and the client subscribes again on the new one).
        var subscribingNodeChannel = RedisKeys.NodeName(subscribingNode.Services.GetRequiredService<IngressNode>().NodeId);
        string[] moving = [.. s_channels.Select(static c => RedisKeys.Position(RedisKeys.ChannelPrefix(RelayServer.AppId, c)).ToString()), subscribingNodeChannel, RedisKeys.Nodes.ToString()];
        foreach (var key in moving)
        {
            var from = await cluster.MasterOfAsync(key);
            var to = masters[(masters.ToList().IndexOf(from) + 1) % masters.Count];
            var started = clock.ElapsedMilliseconds;
            var keys = await cluster.MoveSlotAsync(key, to, KeysPerMigrate).WaitAsync(s_wait);
            output.WriteLine($"{clock.ElapsedMilliseconds} ms: slot {await cluster.SlotOfAsync(key)} ({key}) moved from 127.0.0.1:{from.Port} to 127.0.0.1:{to.Port}, {keys} keys in {clock.ElapsedMilliseconds - started} ms");
            Assert.Equal(to, await cluster.MasterOfAsync(key));
        }

        // Publishing goes on over the moved slots.
        var moved = clock.Elapsed;
        await WaitUntilAsync(() => s_channels.All(c => load.CountAcknowledged(a => a.Channel == c && a.At > moved) >= 300), "publishing to resume on every channel after the moves");

        await stop.CancelAsync();
        await Task.WhenAll(publishing).WaitAsync(s_wait);
        await stopHistory.CancelAsync();
        var (reads, failedReads) = await historyReads.WaitAsync(s_wait);
        output.WriteLine($"{reads.Count} history reads while the slots moved, {failedReads.Count} refused");
        Assert.True(failedReads.Count == 0, $"{failedReads.Count} of {reads.Count} history reads were refused while the slots moved; the first: {failedReads.FirstOrDefault()}");
        var refusals = load.Refusals;
        output.WriteLine($"{clock.ElapsedMilliseconds} ms: {load.Acknowledged.Count} acknowledged, {refusals.Values.Sum()} refused with an error");
        foreach (var (reason, count) in refusals.OrderByDescending(static r => r.Value).Take(5))
        {
            output.WriteLine($"  {count} refused: {reason}");
        }

        foreach (var warning in capture.Entries.Where(static e => e.Level >= LogLevel.Warning && e.Category.StartsWith("Relay.", StringComparison.Ordinal)).GroupBy(static e => e.Category + ": " + (e.Message.Length > 160 ? e.Message[..160] : e.Message)).OrderByDescending(static g => g.Count()).Take(10))
        {
            output.WriteLine($"  {warning.Count()} x {warning.Key}");
        }

        // A subscription made after the bus slot moved (interest written to its new master) is delivered to.
        await using var reader = await TestSocket.ConnectAsync(publishingNode.RealtimeUriWithKey(RelayServer.Key));
        await using (var late = await TestSocket.ConnectAsync(subscribingNode.RealtimeUriWithKey(RelayServer.Key)))
        {
            var lateOk = await late.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "quiet:after-move" });
            Assert.True(lateOk.GetProperty("type").GetString() == "ok", lateOk.GetRawText());
            var latePublish = await reader.RequestAsync(new() { ["type"] = "publish", ["channel"] = "quiet:after-move", ["data"] = "late" });
            Assert.True(latePublish.GetProperty("type").GetString() == "ok", latePublish.GetRawText());
            var lateMessage = await late.ReceiveMessageAsync(TimeSpan.FromSeconds(10));
            Assert.Equal("late", lateMessage.GetProperty("data").GetString());
        }

        foreach (var channel in s_channels)
        {
            // One more publish per channel after the load: a delivery lost while the slot moved is repaired when the
            // channel's next message shows the gap.
            var marker = await reader.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["id"] = "marker", ["data"] = "marker" });
            Assert.True(marker.GetProperty("type").GetString() == "ok", marker.GetRawText());
            load.Add(new PublishLoad.Ack(channel, "marker", marker.GetProperty("seq").GetInt64(), clock.Elapsed));

            // Every acknowledged publish is in the history (read from the slot's new master) under the seq it was
            // acknowledged with, in the epoch the subscriber started in, and the history is gapless.
            var history = await HistoryPages.ReadAllAsync(reader, channel);
            output.WriteLine($"{channel}: history seq {history.Messages[0].Seq}..{history.Messages[^1].Seq}, {history.Messages.Count} messages");
            Assert.Equal(epochs[channel], history.Epoch);
            var idAt = load.CheckHistory(channel, history.Messages);

            // The subscriber on the other node reaches the last seq, every seq once, in order, each the message the
            // history holds there.
            var last = history.Messages[^1].Seq;
            await WaitUntilAsync(() => received.LastSeq(channel) >= last, $"the subscriber to reach seq {last} of {channel}", () =>
            {
                foreach (var e in capture.Entries.Where(static e => e.Category.StartsWith("Relay.Bus", StringComparison.Ordinal)))
                {
                    output.WriteLine($"{e.Level} {e.Category}: {e.Message}");
                }

                return $"it stopped at seq {received.LastSeq(channel)}";
            });

            var got = received.CheckInOrder(channel, load.Acknowledged);
            Assert.Equal(Enumerable.Range(1, (int)last).Select(static i => (long)i), got.Select(static r => r.Seq).Where(s => s <= last));
            Assert.All(got.Where(r => r.Seq <= last), r => Assert.Equal(idAt[r.Seq], r.Id));

            // Recovery after the move: a subscriber coming back with since gets what followed, once, in order.
            await using var recovering = await TestSocket.ConnectAsync(subscribingNode.RealtimeUriWithKey(RelayServer.Key));
            var since = Math.Max(0, last - 500);
            var recovered = await recovering.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel, ["since"] = new { epoch = epochs[channel], seq = since } });
            Assert.True(recovered.GetProperty("type").GetString() == "ok" && recovered.GetProperty("recovered").GetBoolean(), recovered.GetRawText());
            for (var seq = since + 1; seq <= last; seq++)
            {
                var message = await recovering.ReceiveMessageAsync(TimeSpan.FromSeconds(10));
                Assert.Equal(seq, message.GetProperty("seq").GetInt64());
                Assert.Equal(idAt[seq], message.GetProperty("data").GetString());
            }
        }

        await stopReading.CancelAsync();
        await reading.WaitAsync(s_wait);
        await subscriber.DisposeAsync();

        // History held every message throughout, so the node never had reason to tell its subscriber messages were lost.
        var lostNotices = received.Disconnects.Where(static d => d.Contains("lost", StringComparison.Ordinal)).ToList();
        Assert.True(lostNotices.Count == 0, $"the subscriber was told {lostNotices.Count} times that messages were lost while history held them all; the first: {lostNotices.FirstOrDefault()}");
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what, Func<string>? explain = null)
    {
        var deadline = DateTime.UtcNow + s_wait;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"gave up waiting for {what}" + (explain is null ? "" : ": " + explain()));
            await Task.Delay(100);
        }
    }

    // Reads the newest ten messages of each busy channel in turn, one read in flight, until stopped; returns every read
    // made and the error replies among them.
    private static async Task<(List<string> Reads, List<string> Failed)> ReadHistoryAlongAsync(RelayServer server, CancellationToken stop)
    {
        await using var reader = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "history"));
        var reads = new List<string>();
        var failed = new List<string>();
        while (!stop.IsCancellationRequested)
        {
            var channel = s_channels[reads.Count % s_channels.Length];
            var reply = await reader.RequestAsync(new() { ["type"] = "history", ["channel"] = channel, ["limit"] = 10 });
            reads.Add(channel);
            if (reply.GetProperty("type").GetString() != "ok")
            {
                failed.Add(reply.GetRawText());
            }

            // At most ~50 reads a second, as a client would: the connection's read bucket (100/s) refuses more with 42900,
            // which is the rate limit at work, not the move (an unpaced loop made 15,875 reads in one quiet run).
            await Task.Delay(20, CancellationToken.None);
        }

        return (reads, failed);
    }
}
