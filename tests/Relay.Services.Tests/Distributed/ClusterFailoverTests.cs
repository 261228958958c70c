using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Relay.Bus.Redis;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// The Redis bus over a three-master Redis Cluster with a replica each: publishers keep a busy channel at over a thousand
/// acknowledged publishes a second while the master that holds its slot is killed by its PID; the replica takes the slot
/// over, the old master comes back as its replica, and publishing goes on. Nothing acknowledged is lost or moved.
/// </summary>
public sealed class ClusterFailoverTests(ITestOutputHelper output)
{
    private const string Channel = "busy:failover";
    private const int Publishers = 4;

    // Publishes each publisher keeps in flight: 4 x 32 gave 900-4,300 acknowledged a second on two shared cores, 4 x 64
    // keeps the slow end above 1,000.
    private const int Window = 64;

    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Fact(Timeout = 180_000)]
    public async Task ChannelMasterKilledUnderLoad_ReplicaTakesOver_NoAcknowledgedPublishLost_OrderKept_SubscriberRecovers()
    {
        await using var cluster = await RedisClusterSet.StartAsync(replicas: true, nodeTimeoutMs: RedisClusterSet.FailoverNodeTimeoutMs);
        var settings = ServerFixture.Settings();
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Configuration"] = cluster.Configuration;
        settings["Relay:Redis:LeaseTtl"] = "00:00:02";
        settings["Relay:Redis:RequestTimeout"] = "00:00:05";
        settings["Relay:Redis:CommandTimeout"] = "00:00:02";

        // Acknowledged only once the channel master's replica holds it: the replica promoted has every acknowledged one.
        settings["Relay:Redis:ReplicasToAcknowledge"] = "1";
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        settings["Relay:Namespaces:Rules:busy:HistorySize"] = "100000";
        var capture = new LogCapture();
        await using var server = await RelayServer.StartAsync(settings, s => s.AddLogging(b => b.AddProvider(capture)));
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "sub"));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = Channel });
        Assert.True(subscribed.GetProperty("type").GetString() == "ok", subscribed.GetRawText());
        var received = new List<(long Seq, string Id)>();
        using var stopReading = new CancellationTokenSource();
        var reading = Task.Run(() => ReadAllAsync(server, subscriber, subscribed.GetProperty("epoch").GetString()!, received, stopReading.Token));

        var acknowledged = new List<Ack>();
        var refused = 0;
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        var publishing = Enumerable.Range(0, Publishers).Select(p => Task.Run(() => PublishAsync(server, p, acknowledged, () => Interlocked.Increment(ref refused), clock, stop.Token))).ToArray();

        // Steady load first, at a measured rate.
        await Task.Delay(TimeSpan.FromSeconds(3));
        var beforeKill = clock.Elapsed;
        int steady;
        lock (acknowledged)
        {
            steady = acknowledged.Count(a => a.At > TimeSpan.FromSeconds(1));
        }

        var rate = steady / (beforeKill - TimeSpan.FromSeconds(1)).TotalSeconds;
        output.WriteLine($"steady: {rate:0} acknowledged publishes/s");
        Assert.True(rate >= 1000, $"the load before the kill is {rate:0} acknowledged publishes/s, under the 1,000 the test needs");

        var channelKey = RedisKeys.Position(RedisKeys.ChannelPrefix(RelayServer.AppId, Channel)).ToString();
        var master = await cluster.MasterOfAsync(channelKey);
        output.WriteLine($"{clock.ElapsedMilliseconds} ms: killing the channel's master 127.0.0.1:{master.Port}");
        master.Kill();
        var promoted = await cluster.WaitForNewMasterAsync(channelKey, master);
        output.WriteLine($"{clock.ElapsedMilliseconds} ms: 127.0.0.1:{promoted.Port} took the slot; restarting the old master (it comes back as the new one's replica)");
        await master.RestartAsync();
        await cluster.WaitForReplicaInSyncAsync(master);
        var synced = clock.Elapsed;
        output.WriteLine($"{clock.ElapsedMilliseconds} ms: the old master replicates the new one");

        // Publishing goes on through the new master.
        var deadline = DateTime.UtcNow + s_wait;
        while (true)
        {
            lock (acknowledged)
            {
                if (acknowledged.Count(a => a.At > synced) >= 1000)
                {
                    break;
                }
            }

            Assert.True(DateTime.UtcNow < deadline, "publishing did not resume after the failover:\n" + cluster.Log);
            await Task.Delay(100);
        }

        await stop.CancelAsync();
        await Task.WhenAll(publishing).WaitAsync(s_wait);
        output.WriteLine($"{clock.ElapsedMilliseconds} ms: {acknowledged.Count} acknowledged, {refused} refused with an error");

        // One more publish after the load: a delivery lost while subscriptions moved to the new master is repaired when
        // the channel's next message shows the gap (or when the node resyncs); without a next message nothing shows it.
        await using var reader = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var marker = await reader.RequestAsync(new() { ["type"] = "publish", ["channel"] = Channel, ["id"] = "marker", ["data"] = "marker" });
        Assert.True(marker.GetProperty("type").GetString() == "ok", marker.GetRawText());
        acknowledged.Add(new Ack("marker", marker.GetProperty("seq").GetInt64(), clock.Elapsed));

        // Every acknowledged publish is in the new master's history under the seq it was acknowledged with, in the epoch
        // the subscriber started in (the promoted replica continued it), and the history is gapless: a publish the old master took but no replica confirmed was refused, and its seq
        // went to a later one.
        var history = await HistoryPages.ReadAllAsync(reader, Channel);
        Assert.Equal(subscribed.GetProperty("epoch").GetString(), history.Epoch);
        Assert.Equal(Enumerable.Range(1, history.Messages.Count).Select(static i => (long)i), history.Messages.Select(static m => m.Seq));
        var idAt = history.Messages.ToDictionary(static m => m.Seq, static m => m.Data);
        foreach (var ack in acknowledged)
        {
            Assert.True(idAt.TryGetValue(ack.Seq, out var id) && id == ack.Id, $"{ack.Id} was acknowledged with seq {ack.Seq}; the history has {(idAt.TryGetValue(ack.Seq, out var other) ? other : "nothing")} there");
        }

        // The subscriber (subscribing again with since when the node disconnects it: it may, when a history read fails
        // while it repairs a gap) reaches the last seq (the marker's), in order, each seq once, with every acknowledged
        // message. Where it got a message live that the failover then lost (never acknowledged), the seq went to another
        // message, which it does not get again: those are counted.
        var last = history.Messages[^1].Seq;
        deadline = DateTime.UtcNow + s_wait;
        while (true)
        {
            lock (received)
            {
                if (received.Count > 0 && received[^1].Seq >= last)
                {
                    break;
                }
            }

            if (DateTime.UtcNow >= deadline)
            {
                // What the bus said about its connections, for the failure's output.
                foreach (var e in capture.Entries.Where(static e => e.Category.StartsWith("Relay.Bus", StringComparison.Ordinal)))
                {
                    output.WriteLine($"{e.Level} {e.Category}: {e.Message}");
                }
            }

            Assert.True(DateTime.UtcNow < deadline, $"the subscriber stopped at seq {(received.Count > 0 ? received[^1].Seq : 0)} of {last}");
            await Task.Delay(100);
        }

        await stopReading.CancelAsync();
        await reading.WaitAsync(s_wait);
        for (var i = 1; i < received.Count; i++)
        {
            Assert.True(received[i].Seq > received[i - 1].Seq, $"the subscriber got seq {received[i].Seq} after {received[i - 1].Seq}");
        }

        var acknowledgedIds = acknowledged.Select(static a => a.Id).ToHashSet(StringComparer.Ordinal);
        var gotSeq = received.ToDictionary(static r => r.Seq, static r => r.Id);
        var replaced = 0;
        foreach (var ack in acknowledged)
        {
            Assert.True(gotSeq.TryGetValue(ack.Seq, out var id), $"the subscriber never got seq {ack.Seq}");

            if (id != ack.Id)
            {
                // It got, under this seq, a message the failover lost: one that was never acknowledged.
                Assert.DoesNotContain(id, acknowledgedIds);
                replaced++;
            }
        }

        output.WriteLine($"subscriber: {received.Count} messages, the last seq {(received.Count > 0 ? received[^1].Seq : 0)} of {last}; {replaced} acknowledged came under a seq it had already got for a lost, unacknowledged one");
    }

    private sealed record Ack(string Id, long Seq, TimeSpan At);

    // Keeps Window publishes in flight, each with an id; records every acknowledgement. A publish answered with an error
    // (the master gone, no replica confirming it) is counted and not sent again: its id stays unacknowledged.
    private static async Task PublishAsync(RelayServer server, int publisher, List<Ack> acknowledged, Action onRefused, Stopwatch clock, CancellationToken stop)
    {
        await using var socket = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "pub" + publisher.ToString(CultureInfo.InvariantCulture)));
        var ids = new Dictionary<int, string>();
        var next = 1;
        while (!stop.IsCancellationRequested || ids.Count > 0)
        {
            while (!stop.IsCancellationRequested && ids.Count < Window)
            {
                var id = $"p{publisher}-{next}";
                ids[next] = id;
                await socket.SendAsync(new Dictionary<string, object?> { ["type"] = "publish", ["channel"] = Channel, ["id"] = id, ["data"] = id, ["ref"] = next });
                next++;
            }

            // The server answers every publish within its request timeout (5 s), with an error at worst.
            var reply = await socket.ReceiveAsync(TimeSpan.FromSeconds(20));
            var reference = reply.GetProperty("ref").GetInt32();
            Assert.True(ids.Remove(reference, out var sent), "a reply to no publish: " + reply.GetRawText());
            if (reply.GetProperty("type").GetString() == "ok")
            {
                lock (acknowledged)
                {
                    acknowledged.Add(new Ack(sent, reply.GetProperty("seq").GetInt64(), clock.Elapsed));
                }
            }
            else
            {
                onRefused();
            }
        }
    }

    // Reads the subscriber's messages; when the server disconnects it (a slow consumer, 50301, as the history repaired
    // after the failover comes in a burst), reconnects and subscribes again with since, as a client should.
    private async Task ReadAllAsync(RelayServer server, TestSocket first, string epoch, List<(long Seq, string Id)> received, CancellationToken stop)
    {
        var subscriber = first;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                JsonElement frame;
                try
                {
                    frame = await subscriber.ReceiveAsync(TimeSpan.FromSeconds(1));
                }
                catch (TimeoutException)
                {
                    continue;
                }
                catch (System.Net.WebSockets.WebSocketException e)
                {
                    long lastSeq;
                    lock (received)
                    {
                        lastSeq = received.Count > 0 ? received[^1].Seq : 0;
                    }

                    output.WriteLine($"subscriber disconnected after seq {lastSeq} ({e.Message}); subscribing again with since");
                    if (!ReferenceEquals(subscriber, first))
                    {
                        await subscriber.DisposeAsync();
                    }

                    subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "sub"));
                    var again = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = Channel, ["since"] = new { epoch, seq = lastSeq } });
                    output.WriteLine("resubscribed: " + again.GetRawText());
                    continue;
                }

                var type = frame.GetProperty("type").GetString();
                if (type == "disconnect")
                {
                    output.WriteLine("subscriber got " + frame.GetRawText());
                }
                else if (type == "message")
                {
                    lock (received)
                    {
                        received.Add((frame.GetProperty("seq").GetInt64(), frame.GetProperty("data").GetString()!));
                    }
                }
            }
        }
        finally
        {
            if (!ReferenceEquals(subscriber, first))
            {
                await subscriber.DisposeAsync();
            }
        }
    }
}
