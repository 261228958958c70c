using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Relay.Core.Diagnostics;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// Relay as six processes over a real Redis (auth, two routing, one fan-out, ingress A and B): order across nodes,
/// a routing process killed, an ingress node killed, Redis restarted, and one trace across every process.
/// Each test starts its own cluster, so a kill in one never leaks into another.
/// </summary>
public sealed class MultiProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task SubscriberOnA_ReceivesInOrder_WhatAPublisherOnBSends()
    {
        await using var cluster = await StartAsync();
        await using var subscriber = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressA));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "orders" });
        Assert.Equal("ok", subscribed.GetProperty("type").GetString());

        await using var publisher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressB));
        for (var i = 1; i <= 200; i++)
        {
            var ack = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "orders", ["data"] = new { n = i } });
            Assert.True(ack.GetProperty("type").GetString() == "ok", ack.GetRawText());
            Assert.Equal(i, ack.GetProperty("seq").GetInt64());
        }

        for (var i = 1; i <= 200; i++)
        {
            var message = await subscriber.ReceiveMessageAsync(Wait);
            Assert.Equal(i, message.GetProperty("seq").GetInt64());
            Assert.Equal(i, message.GetProperty("data").GetProperty("n").GetInt32());
        }
    }

    [Fact]
    public async Task IngressNodes_VerifyKeysAndTokens_ThatOnlyTheAuthServiceWasConfiguredWith()
    {
        await using var cluster = await StartAsync();

        // A token issued by the auth service (its ES256 key) opens a connection on either ingress node.
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{cluster.Auth.Port}/") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var body = new StringContent("""{"clientId":"carol","capabilities":{"chat:*":["subscribe","publish"]},"ttlSeconds":600}""", Encoding.UTF8, "application/json");
        using var issued = await http.PostAsync(new Uri("v1/tokens", UriKind.Relative), body);
        Assert.True(issued.IsSuccessStatusCode, await issued.Content.ReadAsStringAsync());
        var token = JsonDocument.Parse(await issued.Content.ReadAsStringAsync()).RootElement.GetProperty("token").GetString()!;
        foreach (var node in new[] { cluster.IngressA, cluster.IngressB })
        {
            await using var socket = await TestSocket.ConnectAsync(new Uri($"ws://127.0.0.1:{node.Port}/v1/realtime?token={Uri.EscapeDataString(token)}"));
            Assert.Equal("carol", socket.Connected.GetProperty("clientId").GetString());
            var refused = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "secret" });
            Assert.Equal(40300, refused.GetProperty("code").GetInt32());
        }

        // The auth service's keys work on the nodes; a wrong secret is refused with 401.
        await using (await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressA)))
        {
        }

        var status = await TestSocket.RefusedUpgradeAsync(new Uri($"ws://127.0.0.1:{cluster.IngressB.Port}/v1/realtime?key={Uri.EscapeDataString("test.root:not-the-secret-0123456789")}"));
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, status);
    }

    [Fact]
    public async Task KillingARoutingProcess_MovesItsShards_WithNoAcknowledgedMessageLost()
    {
        await using var cluster = await StartAsync();
        var owners = await WaitForOwnersAsync(cluster, expected: 2);
        output.WriteLine("shard owners before: " + string.Join(",", owners));

        // Channels spread over both routing instances' shards.
        var channels = Enumerable.Range(0, 8).Select(i => $"ledger-{i}").ToArray();
        await using var subscriber = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressA));
        foreach (var channel in channels)
        {
            await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
        }

        await using var publisher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressB));
        var acknowledged = channels.ToDictionary(c => c, _ => new List<long>());
        const int PerChannel = 30;
        for (var round = 1; round <= PerChannel; round++)
        {
            if (round == 10)
            {
                cluster.Routing[0].Kill();
                output.WriteLine("killed routing-1");
            }

            foreach (var channel in channels)
            {
                acknowledged[channel].Add(await PublishUntilAcknowledgedAsync(publisher, channel, $"{channel}-{round}", round));
            }
        }

        // Every acknowledged message arrives, once, in seq order, per channel; seqs are gapless.
        var received = channels.ToDictionary(c => c, _ => new List<long>());
        var deadline = DateTime.UtcNow + Wait;
        while (received.Values.Sum(r => r.Count) < channels.Length * PerChannel && DateTime.UtcNow < deadline)
        {
            var message = await subscriber.ReceiveMessageAsync(Wait);
            received[message.GetProperty("channel").GetString()!].Add(message.GetProperty("seq").GetInt64());
        }

        foreach (var channel in channels)
        {
            Assert.Equal(Enumerable.Range(1, PerChannel).Select(i => (long)i), acknowledged[channel]);
            Assert.Equal(acknowledged[channel], received[channel]);
        }

        // The survivor holds every shard now, including the dead instance's.
        var after = await WaitForOwnersAsync(cluster, expected: 1);
        output.WriteLine("shard owners after: " + string.Join(",", after));
        Assert.Contains(after[0], owners);
        Assert.Contains(owners, owner => owner != after[0]);
    }

    // Waits until every shard has an owner and there are this many distinct owners.
    private static async Task<string?[]> WaitForOwnersAsync(RelayCluster cluster, int expected)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            var owners = await cluster.ShardOwnersAsync();
            if (owners.All(o => o is not null) && owners.Distinct().Count() == expected)
            {
                return owners;
            }

            Assert.True(DateTime.UtcNow < deadline, $"shard owners never settled on {expected} instances: {string.Join(",", owners)}");
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task KillingIngressA_ItsClientsReconnectToB_AndRecoverWhatTheyMissed()
    {
        await using var cluster = await StartAsync();
        await using var publisher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressB));
        await using var watcher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressB));
        await watcher.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "room" });
        string epoch;
        long lastSeen = 0;
        await using (var subscriber = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressA, "&clientId=dave")))
        {
            var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "feed" });
            epoch = subscribed.GetProperty("epoch").GetString()!;
            Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "presence", ["channel"] = "room", ["action"] = "enter" })).GetProperty("type").GetString());
            var entered = await watcher.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence", Wait);
            Assert.Equal(("enter", "dave"), (entered.GetProperty("action").GetString(), entered.GetProperty("clientId").GetString()));
            for (var i = 1; i <= 5; i++)
            {
                await PublishUntilAcknowledgedAsync(publisher, "feed", null, i);
            }

            for (var i = 1; i <= 5; i++)
            {
                lastSeen = (await subscriber.ReceiveMessageAsync(Wait)).GetProperty("seq").GetInt64();
            }

            Assert.Equal(5, lastSeen);
            cluster.IngressA.Kill();
        }

        for (var i = 6; i <= 12; i++)
        {
            await PublishUntilAcknowledgedAsync(publisher, "feed", null, i);
        }

        // Node A's heartbeat stops: fan-out drops its interest and its presence members leave (seen from B).
        var left = await watcher.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence", Wait);
        Assert.Equal(("leave", "dave"), (left.GetProperty("action").GetString(), left.GetProperty("clientId").GetString()));
        using (var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{cluster.IngressB.Port}/") })
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
            var members = JsonDocument.Parse(await http.GetStringAsync(new Uri("v1/channels/room/presence", UriKind.Relative))).RootElement.GetProperty("members");
            Assert.Equal(0, members.GetArrayLength());
            var channels = await http.GetStringAsync(new Uri("v1/channels", UriKind.Relative));
            Assert.DoesNotContain("\"feed\"", channels, StringComparison.Ordinal);
            Assert.Contains("\"room\"", channels, StringComparison.Ordinal);
        }

        // The client fails over to B and resumes after the last seq it saw.
        await using var resumed = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressB));
        var reply = await resumed.RequestAsync(new()
        {
            ["type"] = "subscribe",
            ["channel"] = "feed",
            ["since"] = new { epoch, seq = lastSeen },
        });
        Assert.True(reply.GetProperty("recovered").GetBoolean(), reply.GetRawText());
        for (var i = 6; i <= 12; i++)
        {
            var message = await resumed.ReceiveMessageAsync(Wait);
            Assert.Equal(i, message.GetProperty("seq").GetInt64());
            Assert.Equal(i, message.GetProperty("data").GetProperty("n").GetInt32());
        }

        // And live messages follow on B.
        await PublishUntilAcknowledgedAsync(publisher, "feed", null, 13);
        Assert.Equal(13, (await resumed.ReceiveMessageAsync(Wait)).GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task AnSdkClient_WhoseNodeDies_FailsOverToAnotherNode_AndGetsEveryMessageOnceInOrder()
    {
        await using var cluster = await StartAsync();
        var received = new System.Collections.Concurrent.ConcurrentQueue<(long Seq, int N)>();
        await using var client = await Relay.Client.RelayClient.ConnectAsync(new Relay.Client.RelayClientOptions
        {
            Endpoint = new Uri($"ws://127.0.0.1:{cluster.IngressA.Port}/v1/realtime"),
            FallbackEndpoints = { new Uri($"http://127.0.0.1:{cluster.IngressB.Port}/") },
            Key = RelayServer.Key,
            MinReconnectDelay = TimeSpan.FromMilliseconds(100),
            MaxReconnectDelay = TimeSpan.FromMilliseconds(500),
        }, CancellationToken.None);
        await client.SubscribeAsync("failover", m => received.Enqueue((m.Seq, m.Data.GetProperty("n").GetInt32())));

        await using var publisher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressB));
        for (var i = 1; i <= 5; i++)
        {
            await PublishUntilAcknowledgedAsync(publisher, "failover", null, i);
        }

        await WaitUntilAsync(() => received.Count >= 5, "the first five messages");
        cluster.IngressA.Kill();
        for (var i = 6; i <= 12; i++)
        {
            await PublishUntilAcknowledgedAsync(publisher, "failover", null, i);
        }

        await WaitUntilAsync(() => received.Count >= 12, "the messages published while the client moved to node B");
        Assert.Equal(Enumerable.Range(1, 12).Select(i => ((long)i, i)), received);
        Assert.Equal(cluster.IngressB.Port, client.CurrentEndpoint.Port);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task RestartingRedis_IsSurvived_AndRecoveryIsFalseOnlyWhenHistoryWasLost()
    {
        await using var cluster = await StartAsync();
        await using var publisher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressB));
        await using var subscriber = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressA));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "durable" });
        var epoch = subscribed.GetProperty("epoch").GetString()!;
        for (var i = 1; i <= 5; i++)
        {
            await PublishUntilAcknowledgedAsync(publisher, "durable", null, i);
            Assert.Equal(i, (await subscriber.ReceiveMessageAsync(Wait)).GetProperty("seq").GetInt64());
        }

        // A restart that keeps the data (RDB saved first): everything carries on in the same epoch.
        await using (var admin = await cluster.Redis.ConnectAsync())
        {
            await admin.GetDatabase().ExecuteAsync("SAVE");
        }

        await cluster.Redis.RestartAsync();
        output.WriteLine("redis restarted with its data");

        // Leases that ran out or were lost while Redis was down are claimed by the first request, not after a timeout.
        var firstAfterRestart = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 6; i <= 10; i++)
        {
            Assert.Equal(i, await PublishUntilAcknowledgedAsync(publisher, "durable", null, i));
        }

        Assert.True(firstAfterRestart.Elapsed < TimeSpan.FromSeconds(5), $"five publishes after the restart took {firstAfterRestart.Elapsed}");

        // The live subscriber gets them (its node and fan-out re-subscribed) and a client resuming from seq 5 recovers.
        var live = new List<long>();
        while (live.Count < 5)
        {
            live.Add((await subscriber.ReceiveMessageAsync(Wait)).GetProperty("seq").GetInt64());
        }

        Assert.Equal([6, 7, 8, 9, 10], live);
        await using (var resumed = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressB)))
        {
            var reply = await resumed.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "durable", ["since"] = new { epoch, seq = 5 } });
            Assert.True(reply.GetProperty("recovered").GetBoolean(), reply.GetRawText());
            Assert.Equal(epoch, reply.GetProperty("epoch").GetString());
        }

        // A restart that loses everything (a fresh, empty Redis): a new epoch, and recovery says so.
        File.Delete(Path.Combine(cluster.Redis.DataDirectory, "dump.rdb"));
        await cluster.Redis.RestartAsync();
        output.WriteLine("redis restarted empty");
        var afterEmptyRestart = System.Diagnostics.Stopwatch.StartNew();
        var seq = await PublishUntilAcknowledgedAsync(publisher, "durable", null, 11);
        Assert.Equal(1, seq);
        Assert.True(afterEmptyRestart.Elapsed < TimeSpan.FromSeconds(5), $"the first publish after Redis lost everything took {afterEmptyRestart.Elapsed}");

        // The live subscriber goes on in the new epoch (its node registered its interest again with the empty Redis).
        var first = await subscriber.ReceiveMessageAsync(Wait);
        Assert.Equal((1L, 11), (first.GetProperty("seq").GetInt64(), first.GetProperty("data").GetProperty("n").GetInt32()));
        Assert.NotEqual(epoch, first.GetProperty("epoch").GetString());
        await using (var resumed = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressB)))
        {
            var reply = await resumed.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "durable", ["since"] = new { epoch, seq = 10 } });
            Assert.False(reply.GetProperty("recovered").GetBoolean(), reply.GetRawText());
            Assert.NotEqual(epoch, reply.GetProperty("epoch").GetString());
        }
    }

    [Fact]
    public async Task KillingFanOut_AndStartingItAgain_DeliversWhatWasPublishedMeanwhile_InOrder()
    {
        await using var cluster = await StartAsync();
        await using var subscriber = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressA));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "steady" });
        await using var publisher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressB));
        await PublishUntilAcknowledgedAsync(publisher, "steady", null, 1);
        Assert.Equal(1, (await subscriber.ReceiveMessageAsync(Wait)).GetProperty("seq").GetInt64());

        // Without fan-out, publishes are still acknowledged (stored); nobody delivers them.
        cluster.FanOut.Kill();
        for (var i = 2; i <= 6; i++)
        {
            Assert.Equal(i, await PublishUntilAcknowledgedAsync(publisher, "steady", null, i));
        }

        await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(1)));

        // A new fan-out reads every node's interest and announces a resync: node A reads 2..6 back from history.
        await using var fanOut = await cluster.StartServiceAsync("fanout-2", "Relay.FanOut");
        for (var i = 2; i <= 6; i++)
        {
            var message = await subscriber.ReceiveMessageAsync(Wait);
            Assert.Equal((i, i), (message.GetProperty("seq").GetInt64(), message.GetProperty("data").GetProperty("n").GetInt32()));
        }

        await PublishUntilAcknowledgedAsync(publisher, "steady", null, 7);
        Assert.Equal(7, (await subscriber.ReceiveMessageAsync(Wait)).GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task OnePublish_ProducesOneTrace_WithSpansFromEveryProcessOnThePath()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        await using var cluster = await StartAsync(new Dictionary<string, string>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint,
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
        });
        await using var subscriber = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressA));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "traced" });

        var traceId = RandomNumberGenerator.GetBytes(16);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{cluster.IngressB.Port}/") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/channels/traced/messages") { Content = new StringContent("""{"data":"hello"}""", Encoding.UTF8, "application/json") };
        request.Headers.Add("traceparent", $"00-{Convert.ToHexStringLower(traceId)}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}-01");
        using var response = await http.SendAsync(request);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        Assert.Equal("hello", (await subscriber.ReceiveMessageAsync(Wait)).GetProperty("data").GetString());

        // Each process names itself (OTEL_SERVICE_NAME) in the resource of the batches it exports; the batches that
        // carry this trace id must come from ingress-b, a routing instance, fanout and ingress-a, with their hop's span.
        (string Service, string Span)[] path = [("ingress-b", RelayTracing.IngressReceive), ("routing-", RelayTracing.RoutingSequence), ("fanout", RelayTracing.FanOutDispatch), ("ingress-a", RelayTracing.IngressDeliver)];
        var deadline = DateTime.UtcNow.AddSeconds(20);
        List<byte[]> ours = [];
        while (DateTime.UtcNow < deadline)
        {
            ours = [.. receiver.Exports.Where(body => body.AsSpan().IndexOf(traceId) >= 0)];
            if (path.All(hop => ours.Any(body => Has(body, hop.Service) && Has(body, hop.Span))))
            {
                break;
            }

            await Task.Delay(100);
        }

        foreach (var (service, span) in path)
        {
            Assert.True(ours.Any(body => Has(body, service) && Has(body, span)), $"no '{span}' span from a '{service}' process carries trace {Convert.ToHexStringLower(traceId)}");
        }
    }

    private static bool Has(byte[] body, string text) => body.AsSpan().IndexOf(Encoding.UTF8.GetBytes(text)) >= 0;

    private async Task<RelayCluster> StartAsync(IReadOnlyDictionary<string, string>? environment = null)
    {
        var cluster = await RelayCluster.StartAsync(environment);
        cluster.Output = output.WriteLine;
        output.WriteLine($"cluster up: redis {cluster.Redis.Port}, ingress A {cluster.IngressA.Port}, ingress B {cluster.IngressB.Port}");
        return cluster;
    }

    // Publishes with an idempotency id (the given one, else channel-n) and retries what was not acknowledged, as a careful client does;
    // returns the seq of the acknowledgement.
    private async Task<long> PublishUntilAcknowledgedAsync(TestSocket publisher, string channel, string? id, int n)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var request = new Dictionary<string, object?> { ["type"] = "publish", ["channel"] = channel, ["data"] = new { n } };
            request["id"] = id ?? $"{channel}-{n}";

            JsonElement reply;
            try
            {
                reply = await publisher.RequestAsync(request);
            }
            catch (TimeoutException) when (DateTime.UtcNow < deadline)
            {
                continue;
            }

            if (reply.GetProperty("type").GetString() == "ok")
            {
                return reply.GetProperty("seq").GetInt64();
            }

            output.WriteLine($"publish {channel}/{n} not acknowledged: {reply.GetRawText()}");
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"publish {channel}/{n} was never acknowledged: {reply.GetRawText()}");
            }

            await Task.Delay(100);
        }
    }
}
