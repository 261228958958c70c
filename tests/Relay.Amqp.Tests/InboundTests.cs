using System.Diagnostics;
using System.Text;
using RabbitMQ.Client;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Amqp.Tests;

/// <summary>
/// Inbound against a real RabbitMQ: messages a backend publishes to the exchange reach WebSocket subscribers of the
/// configured app once each, in order per channel, across connections the broker closes mid-stream (acks only after
/// routing took them; redeliveries dropped by message id); bad messages are dead-lettered once, never requeued.
/// </summary>
[Collection(BrokerCollection.Name)]
public sealed class InboundTests(BrokerFixture fixture, ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Inbound_AtRateWithConnectionClosedTwice_EachMessageReachesSubscribersOnceInOrder_QueueDrained()
    {
        const int channels = 4;
        const int perChannel = 1500;
        await using var connection = await fixture.ConnectAsync();
        await using var server = await StartAsync(new()
        {
            ["Relay:Amqp:Queue"] = "in-cut",
            ["Relay:Amqp:InboundExchange"] = "relay.in.cut",
        });

        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await using var otherApp = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.OtherAppKey));
        for (var c = 0; c < channels; c++)
        {
            Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = $"in/{c}" })).GetProperty("type").GetString());
        }

        Assert.Equal("ok", (await otherApp.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "in/0" })).GetProperty("type").GetString());

        // A backend's publishes: persistent, confirmed, each with a message id; the channels interleaved.
        var clock = Stopwatch.StartNew();
        var published = Task.Run(() => Topology.PublishConfirmedAsync(connection, "relay.in.cut", Enumerable.Range(0, channels * perChannel).Select(i =>
        {
            var (c, n) = (i % channels, i / channels);
            return ($"in/{c}", new BasicProperties { Persistent = true, MessageId = $"m-{c}-{n}" }, Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));
        })));

        var received = Enumerable.Range(0, channels).ToDictionary(static c => $"in/{c}", static _ => new List<(long N, long Seq)>());
        var cuts = new[] { channels * perChannel / 4, channels * perChannel / 2 };
        var cut = 0;
        for (var total = 0; total < channels * perChannel; total++)
        {
            if (cut < cuts.Length && total == cuts[cut])
            {
                await fixture.CloseBridgeConnectionAsync("relay-amqp-inbound");
                output.WriteLine($"closed the bridge's connection at {total} delivered");
                cut++;
            }

            var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(30));
            received[message.GetProperty("channel").GetString()!].Add((message.GetProperty("data").GetProperty("n").GetInt64(), message.GetProperty("seq").GetInt64()));
        }

        await published.WaitAsync(Timeout);
        output.WriteLine($"{channels * perChannel} messages published and delivered in {clock.Elapsed.TotalSeconds:F1} s ({channels * perChannel / clock.Elapsed.TotalSeconds:F0}/s)");

        // Nothing more: a redelivery that routing did not recognise would arrive here as a second copy.
        await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(3)));
        await Assert.ThrowsAsync<TimeoutException>(() => otherApp.ReceiveMessageAsync(TimeSpan.FromSeconds(1)));
        foreach (var (channel, list) in received)
        {
            Assert.Equal(Enumerable.Range(0, perChannel).Select(static n => (long)n), list.Select(static m => m.N));
            Assert.Equal(Enumerable.Range(1, perChannel).Select(static n => (long)n), list.Select(static m => m.Seq));
        }

        // Every delivery was acked: the queue holds nothing, ready or unacknowledged.
        await WaitForAsync(async () => await fixture.Broker.QueueDepthAsync("in-cut") == (0, 0), "the queue in-cut to drain");
        Assert.True(await Metrics.SumAsync(server.BaseAddress, "relay_amqp_inbound_errors_total", "reason=\"connection\"") >= 2);
    }

    [Fact]
    public async Task Inbound_HostStoppedAndStartedMidStream_EachMessageReachesSubscribersOnceInOrder()
    {
        const int channels = 4;
        const int perChannel = 1500;
        await using var redis = await RedisServer.StartAsync();
        await using var connection = await fixture.ConnectAsync();

        // Two Relays over one Redis: the subscriber on one, inbound on the other, which is stopped with deliveries
        // unacked (up to the prefetch) and started again. What it had not acked comes again; nothing it acked is lost.
        Dictionary<string, string?> Settings(bool inbound)
        {
            var settings = new Dictionary<string, string?>
            {
                ["Relay:Bus"] = "redis",
                ["Relay:Redis:Configuration"] = redis.Configuration,
                ["Relay:Redis:LeaseTtl"] = "00:00:02",
            };
            if (inbound)
            {
                settings["Relay:Amqp:Queue"] = "in-restart";
                settings["Relay:Amqp:InboundExchange"] = "relay.in.restart";
            }

            return settings;
        }

        await using var subscriberHost = await RelayServer.StartAsync(Settings(inbound: false));
        await using var subscriber = await TestSocket.ConnectAsync(subscriberHost.RealtimeUriWithKey(RelayServer.Key));
        for (var c = 0; c < channels; c++)
        {
            Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = $"re/{c}" })).GetProperty("type").GetString());
        }

        var inboundHost = await StartAsync(Settings(inbound: true));
        try
        {
            var published = Task.Run(() => Topology.PublishConfirmedAsync(connection, "relay.in.restart", Enumerable.Range(0, channels * perChannel).Select(i =>
            {
                var (c, n) = (i % channels, i / channels);
                return ($"re/{c}", new BasicProperties { Persistent = true, MessageId = $"r-{c}-{n}" }, Encoding.UTF8.GetBytes($"{{\"n\":{n}}}"));
            })));

            var received = Enumerable.Range(0, channels).ToDictionary(static c => $"re/{c}", static _ => new List<(long N, long Seq)>());
            for (var total = 0; total < channels * perChannel; total++)
            {
                if (total == channels * perChannel / 3)
                {
                    await inboundHost.DisposeAsync();
                    inboundHost = await StartAsync(Settings(inbound: true));
                    output.WriteLine($"restarted the inbound host at {total} delivered");
                }

                var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(30));
                received[message.GetProperty("channel").GetString()!].Add((message.GetProperty("data").GetProperty("n").GetInt64(), message.GetProperty("seq").GetInt64()));
            }

            await published.WaitAsync(Timeout);
            await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(3)));
            foreach (var (channel, list) in received)
            {
                Assert.Equal(Enumerable.Range(0, perChannel).Select(static n => (long)n), list.Select(static m => m.N));
                Assert.Equal(Enumerable.Range(1, perChannel).Select(static n => (long)n), list.Select(static m => m.Seq));
            }

            await WaitForAsync(async () => await fixture.Broker.QueueDepthAsync("in-restart") == (0, 0), "the queue in-restart to drain");
        }
        finally
        {
            await inboundHost.DisposeAsync();
        }
    }

    [Fact]
    public async Task Inbound_BadMessagesAmongGood_DeadLetteredOnceEach_GoodOnesArriveInOrder()
    {
        const int good = 600;
        await using var connection = await fixture.ConnectAsync();
        await Topology.DeclareQueueAsync(connection, "in-dead", "relay.in.dlx", type: "fanout", key: "");
        await using var deadLetters = await QueueReader.StartAsync(connection, "in-dead");
        await using var server = await StartAsync(new()
        {
            ["Relay:Amqp:Queue"] = "in-bad",
            ["Relay:Amqp:InboundExchange"] = "relay.in.bad",
            ["Relay:Amqp:DeadLetterExchange"] = "relay.in.dlx",
            ["Relay:Amqp:InboundMaxMessageBytes"] = "1024",
        });
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "good" })).GetProperty("type").GetString());

        // After every fifth good message, one bad one of each kind in turn. Half the good ones name their channel by
        // routing key, half by the relay-channel header (their routing key is then no channel at all).
        var bad = new (string Reason, Func<int, (string, BasicProperties, byte[])> Make)[]
        {
            ("bad_channel", n => ("x", WithChannel($"b-{n}", "bad/+/name"), Encoding.UTF8.GetBytes("1"))),
            ("too_large", n => ("good", new BasicProperties { MessageId = $"b-{n}" }, Encoding.UTF8.GetBytes($"\"{new string('x', 2000)}\""))),
            ("empty", n => ("good", new BasicProperties { MessageId = $"b-{n}" }, [])),
            ("bad_id", n => ("good", new BasicProperties { MessageId = new string('i', 65) }, Encoding.UTF8.GetBytes("1"))),
            ("no_channel", n => ("", new BasicProperties { MessageId = $"b-{n}" }, Encoding.UTF8.GetBytes("1"))),
        };
        var messages = new List<(string, BasicProperties, byte[])>();
        var counts = bad.ToDictionary(static b => b.Reason, static _ => 0);
        for (var n = 0; n < good; n++)
        {
            var body = Encoding.UTF8.GetBytes($"{{\"n\":{n}}}");
            messages.Add(n % 2 == 0 ? ("good", new BasicProperties { MessageId = $"g-{n}" }, body) : ("x.y", WithChannel($"g-{n}", "good"), body));
            if (n % 5 == 4)
            {
                var kind = bad[(n / 5) % bad.Length];
                messages.Add(kind.Make(n));
                counts[kind.Reason]++;
            }
        }

        await Topology.PublishConfirmedAsync(connection, "relay.in.bad", messages).WaitAsync(Timeout);
        for (var n = 0; n < good; n++)
        {
            Assert.Equal(n, (await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(30))).GetProperty("data").GetProperty("n").GetInt32());
        }

        // Each bad message went to the dead-letter exchange once, rejected: none requeued and delivered again.
        var dead = new List<Received>();
        for (var i = 0; i < counts.Values.Sum(); i++)
        {
            dead.Add(await deadLetters.ReceiveAsync(TimeSpan.FromSeconds(30)));
        }

        Assert.Empty(await deadLetters.DrainAsync(TimeSpan.FromSeconds(3)));
        await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(1)));
        Assert.All(dead, static d => Assert.True(d.HasHeader("x-death"), "no x-death header"));
        await WaitForAsync(async () => await fixture.Broker.QueueDepthAsync("in-bad") == (0, 0), "the queue in-bad to drain");
        foreach (var (reason, count) in counts)
        {
            Assert.Equal(count, await Metrics.SumAsync(server.BaseAddress, "relay_amqp_inbound_errors_total", $"reason=\"{reason}\""));
        }
    }

    [Fact]
    public async Task Inbound_RoutingRefusesForAWhile_RequeuedThenEachMessageOnceInOrder()
    {
        const int perChannel = 200;
        string[] channels = ["hk:a", "hk:b"];

        // A before-publish hook that fails for its first 2 s: routing answers 50300 (fail closed), which can succeed later.
        using var hook = new System.Net.HttpListener();
        var port = FreePort();
        hook.Prefixes.Add($"http://127.0.0.1:{port}/");
        hook.Start();
        var clock = Stopwatch.StartNew();
        var failures = 0;
        var serving = Task.Run(async () =>
        {
            while (hook.IsListening)
            {
                System.Net.HttpListenerContext context;
                try
                {
                    context = await hook.GetContextAsync();
                }
                catch (Exception e) when (e is System.Net.HttpListenerException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }

                if (clock.Elapsed < TimeSpan.FromSeconds(2))
                {
                    Interlocked.Increment(ref failures);
                    context.Response.StatusCode = 500;
                }
                else
                {
                    context.Response.ContentType = "application/json";
                    await context.Response.OutputStream.WriteAsync(Encoding.UTF8.GetBytes("{\"action\":\"accept\"}"));
                }

                context.Response.Close();
            }
        });

        await using var connection = await fixture.ConnectAsync();
        await using var server = await StartAsync(new()
        {
            ["Relay:Amqp:Queue"] = "in-requeue",
            ["Relay:Amqp:InboundExchange"] = "relay.in.requeue",
            ["Relay:Functions:Namespaces:hk:BeforePublish:Target"] = $"http://127.0.0.1:{port}/hook",
            ["Relay:Functions:Namespaces:hk:BeforePublish:OnFailure"] = "Closed",
        });
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        foreach (var channel in channels)
        {
            Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel })).GetProperty("type").GetString());
        }

        clock.Restart();
        await Topology.PublishConfirmedAsync(connection, "relay.in.requeue", Enumerable.Range(0, channels.Length * perChannel).Select(i =>
            (channels[i % channels.Length], new BasicProperties { Persistent = true, MessageId = $"q-{i}" }, Encoding.UTF8.GetBytes($"{{\"n\":{i / channels.Length}}}")))).WaitAsync(Timeout);

        var received = channels.ToDictionary(static c => c, static _ => new List<(long N, long Seq)>());
        for (var i = 0; i < channels.Length * perChannel; i++)
        {
            var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(30));
            received[message.GetProperty("channel").GetString()!].Add((message.GetProperty("data").GetProperty("n").GetInt64(), message.GetProperty("seq").GetInt64()));
        }

        await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(2)));
        foreach (var (_, list) in received)
        {
            Assert.Equal(Enumerable.Range(0, perChannel).Select(static n => (long)n), list.Select(static m => m.N));
            Assert.Equal(Enumerable.Range(1, perChannel).Select(static n => (long)n), list.Select(static m => m.Seq));
        }

        output.WriteLine($"the hook failed {failures} calls");
        Assert.True(failures > 0, "the hook never failed: the test did not exercise a refusal");
        Assert.True(await Metrics.SumAsync(server.BaseAddress, "relay_amqp_inbound_errors_total", "reason=\"requeued\"") > 0);
        Assert.Equal(0, await Metrics.SumAsync(server.BaseAddress, "relay_amqp_inbound_errors_total", "reason=\"refused\""));
        await WaitForAsync(async () => await fixture.Broker.QueueDepthAsync("in-requeue") == (0, 0), "the queue in-requeue to drain");
        hook.Stop();
        await serving.WaitAsync(TimeSpan.FromSeconds(10));
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static BasicProperties WithChannel(string id, string channel) => new()
    {
        MessageId = id,
        Headers = new Dictionary<string, object?> { [AmqpHeaders.Channel] = channel },
    };

    /// <summary>A server with inbound on (app <see cref="RelayServer.AppId"/>), returned once its consumer is up.</summary>
    private async Task<RelayServer> StartAsync(Dictionary<string, string?> settings)
    {
        settings["Relay:Amqp:Uri"] = fixture.Broker.Uri;
        settings["Relay:Amqp:App"] = RelayServer.AppId;
        var server = await RelayServer.StartAsync(settings);
        try
        {
            await WaitForAsync(async () => await Metrics.SumAsync(server.BaseAddress, "relay_amqp_connected", "direction=\"inbound\"") == 1, "inbound to connect");
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), $"waited 30 s for {what}");
            await Task.Delay(100);
        }
    }
}
