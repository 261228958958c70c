using System.Diagnostics;
using System.Text;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Amqp.Tests;

/// <summary>
/// Outbound against a real RabbitMQ: messages published by WebSocket clients reach a queue bound to the exchange, each
/// channel in seq order, with Relay's headers, persistent, and only the configured app's configured channels; with the
/// bridge's connection closed under it, every message still arrives, in order (a few twice, never a gap).
/// </summary>
[Collection(BrokerCollection.Name)]
public sealed class OutboundTests(BrokerFixture fixture, ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private static readonly string[] Channels = ["feed/0", "feed/1", "feed/2", "feed/3"];

    private Dictionary<string, string?> Settings(string exchange) => new()
    {
        ["Relay:Amqp:Uri"] = fixture.Broker.Uri,
        ["Relay:Amqp:App"] = RelayServer.AppId,
        ["Relay:Amqp:Exchange"] = exchange,
        ["Relay:Amqp:OutboundChannels:0"] = "feed/#",

        // The load runs at thousands a second on two connections.
        ["Relay:Ingress:PublishRatePerSecond"] = "100000",
    };

    [Fact]
    public async Task Outbound_WebSocketPublishesAtRate_EachChannelOnceInSeqOrderWithHeaders_OnlyItsAppAndChannels()
    {
        const string exchange = "relay.out.rate";
        const string queue = "out-rate";
        await using var connection = await fixture.ConnectAsync();
        await Topology.DeclareQueueAsync(connection, queue, exchange);
        await using var reader = await QueueReader.StartAsync(connection, queue);
        await using var server = await RelayServer.StartAsync(Settings(exchange));

        var load = new PublishLoad(server, Channels) { Window = 64 };
        var acknowledged = await RunLoadAsync(load, 6000, cut: null);

        // Not bridged: the other app's publishes on a bridged channel name, and this app's channel outside feed/#.
        await using (var other = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.OtherAppKey)))
        await using (var mine = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key)))
        {
            for (var i = 0; i < 5; i++)
            {
                Assert.Equal("ok", (await other.RequestAsync(new() { ["type"] = "publish", ["channel"] = "feed/0", ["data"] = "other-app" })).GetProperty("type").GetString());
                Assert.Equal("ok", (await mine.RequestAsync(new() { ["type"] = "publish", ["channel"] = "news/0", ["data"] = "not-bridged" })).GetProperty("type").GetString());
            }
        }

        var received = new List<Received>();
        for (var i = 0; i < acknowledged.Count; i++)
        {
            received.Add(await reader.ReceiveAsync(TimeSpan.FromSeconds(30)));
        }

        // Nothing more: a second copy, another app's message or an unbridged channel would arrive here.
        var extra = await reader.DrainAsync(TimeSpan.FromSeconds(3));
        Assert.True(extra.Count == 0, $"{extra.Count} more deliveries, e.g. {extra.Select(static r => r.RoutingKey + " " + Encoding.UTF8.GetString(r.Body)).FirstOrDefault()}");

        var ids = acknowledged.ToDictionary(static a => (a.Channel, a.Seq), static a => a.Id);
        foreach (var channel in Channels)
        {
            var mine = received.Where(r => r.RoutingKey == channel).ToList();
            Assert.Equal(Enumerable.Range(1, ids.Keys.Count(k => k.Channel == channel)).Select(static n => (long)n), mine.Select(static r => long.Parse(r.Header(AmqpHeaders.Seq), System.Globalization.CultureInfo.InvariantCulture)));
            foreach (var message in mine)
            {
                var seq = long.Parse(message.Header(AmqpHeaders.Seq), System.Globalization.CultureInfo.InvariantCulture);
                var id = ids[(channel, seq)];
                Assert.Equal(RelayServer.AppId, message.Header(AmqpHeaders.App));
                Assert.Equal(channel, message.Header(AmqpHeaders.Channel));
                Assert.False(string.IsNullOrEmpty(message.Header(AmqpHeaders.Epoch)));
                Assert.Equal(id, message.Header(AmqpHeaders.Id));
                Assert.Equal(id, message.Properties.MessageId);
                Assert.True(message.Properties.Persistent, "not persistent");
                Assert.Equal("application/json", message.Properties.ContentType);
                Assert.Equal($"\"{id}\"", Encoding.UTF8.GetString(message.Body));
            }
        }

        Assert.Equal(acknowledged.Count, await Metrics.SumAsync(server.BaseAddress, "relay_amqp_outbound_confirmed_total"));
    }

    [Fact]
    public async Task Outbound_ConnectionClosedTwiceMidStream_EveryMessageArrivesInSeqOrderPerChannel()
    {
        const string exchange = "relay.out.cut";
        const string queue = "out-cut";
        await using var connection = await fixture.ConnectAsync();
        await Topology.DeclareQueueAsync(connection, queue, exchange);
        await using var reader = await QueueReader.StartAsync(connection, queue);
        await using var server = await RelayServer.StartAsync(Settings(exchange));

        // The broker closes the bridge's connection at 2,000 and 4,000 acknowledged publishes, with hundreds unconfirmed.
        var load = new PublishLoad(server, Channels) { Window = 64, PerSecond = 1500 };
        var acknowledged = await RunLoadAsync(load, 6000, cut: async count =>
        {
            await fixture.CloseBridgeConnectionAsync("relay-amqp-outbound");
            output.WriteLine($"closed the bridge's connection at {count} acknowledged");
        });

        var expected = acknowledged.GroupBy(static a => a.Channel).ToDictionary(static g => g.Key, static g => g.Max(static a => a.Seq));
        var last = Channels.ToDictionary(static c => c, static _ => 0L);
        var repeats = 0;
        var deadline = Stopwatch.StartNew();
        while (last.Any(kv => kv.Value < expected.GetValueOrDefault(kv.Key)))
        {
            Assert.True(deadline.Elapsed < Timeout, $"still waiting after {Timeout}: at {string.Join(", ", last.Select(static kv => $"{kv.Key} {kv.Value}"))} of {string.Join(", ", expected.Select(static kv => $"{kv.Key} {kv.Value}"))}");
            var message = await reader.ReceiveAsync(TimeSpan.FromSeconds(30));
            var seq = long.Parse(message.Header(AmqpHeaders.Seq), System.Globalization.CultureInfo.InvariantCulture);

            // A consumer that keeps each channel's last seq: what was unconfirmed at a cut may come again, in order;
            // past it, the next message is always the next seq (no gap, no reorder).
            if (seq <= last[message.RoutingKey])
            {
                repeats++;
                continue;
            }

            Assert.Equal(last[message.RoutingKey] + 1, seq);
            last[message.RoutingKey] = seq;
        }

        output.WriteLine($"{acknowledged.Count} acknowledged, {repeats} delivered again after the cuts");
        Assert.True(await Metrics.SumAsync(server.BaseAddress, "relay_amqp_outbound_errors_total", "reason=\"connection\"") >= 2);
    }

    [Fact]
    public async Task Outbound_BrokerStoppedAndStartedMidStream_EveryMessageArrivesInSeqOrderPerChannel()
    {
        const string exchange = "relay.out.restart";
        const string queue = "out-restart";
        await using (var setup = await fixture.ConnectAsync())
        {
            await Topology.DeclareQueueAsync(setup, queue, exchange);
        }

        await using var server = await RelayServer.StartAsync(Settings(exchange));

        // The broker application stops (every connection closed, new ones refused) for about two seconds mid-stream and
        // starts again with its durable queue; meanwhile outbound buffers. The queue is read once the load is over.
        var load = new PublishLoad(server, Channels) { Window = 64, PerSecond = 1000 };
        var stopped = false;
        var acknowledged = await RunLoadAsync(load, 6000, cut: async count =>
        {
            if (!stopped)
            {
                await fixture.Broker.CtlAsync("stop_app");
                output.WriteLine($"stopped the broker at {count} acknowledged");
                await Task.Delay(TimeSpan.FromSeconds(2));
                await fixture.Broker.CtlAsync("start_app");
                stopped = true;
            }
        });

        await using var connection = await fixture.ConnectAsync();
        await using var reader = await QueueReader.StartAsync(connection, queue);
        var expected = acknowledged.GroupBy(static a => a.Channel).ToDictionary(static g => g.Key, static g => g.Max(static a => a.Seq));
        var last = Channels.ToDictionary(static c => c, static _ => 0L);
        var repeats = 0;
        var deadline = Stopwatch.StartNew();
        while (last.Any(kv => kv.Value < expected.GetValueOrDefault(kv.Key)))
        {
            Assert.True(deadline.Elapsed < Timeout, $"still waiting after {Timeout}: at {string.Join(", ", last.Select(static kv => $"{kv.Key} {kv.Value}"))} of {string.Join(", ", expected.Select(static kv => $"{kv.Key} {kv.Value}"))}");
            var message = await reader.ReceiveAsync(TimeSpan.FromSeconds(30));
            var seq = long.Parse(message.Header(AmqpHeaders.Seq), System.Globalization.CultureInfo.InvariantCulture);
            if (seq <= last[message.RoutingKey])
            {
                repeats++;
                continue;
            }

            Assert.Equal(last[message.RoutingKey] + 1, seq);
            last[message.RoutingKey] = seq;
        }

        output.WriteLine($"{acknowledged.Count} acknowledged, {repeats} delivered again after the restart");
        Assert.Equal(0, await Metrics.SumAsync(server.BaseAddress, "relay_amqp_outbound_dropped_total"));
    }

    private async Task<List<PublishLoad.Ack>> RunLoadAsync(PublishLoad load, int count, Func<int, Task>? cut)
    {
        using var stop = new CancellationTokenSource();
        var publishers = load.Start(2, stop.Token);
        var clock = Stopwatch.StartNew();
        var cuts = cut is null ? 0 : 2;
        var nextCut = count / 3;
        var target = count;
        while (load.CountAcknowledged(static _ => true) < target || cuts > 0)
        {
            Assert.True(clock.Elapsed < Timeout, $"only {load.CountAcknowledged(static _ => true)} publishes acknowledged within {Timeout}");
            if (cuts > 0 && load.CountAcknowledged(static _ => true) >= nextCut)
            {
                await cut!(load.CountAcknowledged(static _ => true));
                cuts--;

                // rabbitmqctl takes a second or two: the next cut, and the end, come only after more publishes.
                nextCut = load.CountAcknowledged(static _ => true) + (count / 3);
                target = Math.Max(target, nextCut);
            }

            await Task.Delay(10);
        }

        stop.Cancel();
        await Task.WhenAll(publishers).WaitAsync(Timeout);
        var acknowledged = load.Acknowledged;
        var rate = acknowledged.Count / clock.Elapsed.TotalSeconds;
        output.WriteLine($"{acknowledged.Count} publishes acknowledged in {clock.Elapsed.TotalSeconds:F1} s ({rate:F0}/s)");
        Assert.Empty(load.Refusals);
        Assert.True(rate >= 1000, $"the load ran at {rate:F0} publishes a second, not at thousands");
        return acknowledged;
    }
}
