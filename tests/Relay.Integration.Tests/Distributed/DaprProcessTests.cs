using Relay.Testing;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// The services as separate processes on the Dapr bus, each beside a sidecar stand-in of its own (app ids
/// <c>relay-routing</c>, <c>relay-fanout</c>, <c>relay-ingress</c>) over one redis-server, every sidecar posting each
/// delivery twice and shuffling within 8: requests cross by invocation between app ids, messages by topics between
/// consumer groups, and subscribers on both nodes still see each seq once, in order. With two routing instances under
/// one app id, invocation reaches either: a request for a shard the other one leases goes on to it over the Redis bus,
/// and each forwards to the sequenced topic only the shards it leases.
/// </summary>
public sealed class DaprProcessTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Services_OverRedeliveringReorderingSidecars_DeliverEachSeqOnceInOrderOnBothNodes(int routingInstances)
    {
        const int Count = 1000;
        const int Round = 100;
        await using var redis = await RedisServer.StartAsync();
        var logs = Directory.CreateTempSubdirectory("relay-dapr-").FullName;
        var sidecars = new List<DaprSidecar>();
        var processes = new List<ServiceProcess>();
        try
        {
            async Task<ServiceProcess> StartAsync(string name, string project, string appId)
            {
                var sidecar = await DaprSidecar.StartAsync(appId, redis.Configuration);
                sidecars.Add(sidecar);
                sidecar.Copies = 2;
                sidecar.ReorderWindow = 8;
                var environment = ServiceProcess.TestKeysEnvironment();
                environment["Relay__Bus"] = "dapr";
                environment["Relay__Redis__Configuration"] = redis.Configuration;
                environment["Relay__Redis__LeaseTtl"] = "00:00:01.5";
                environment["Relay__Dapr__HttpEndpoint"] = sidecar.HttpEndpoint.ToString();
                environment["Relay__Ingress__NodeId"] = name;
                environment["Relay__Ingress__PublishRatePerSecond"] = "1000000";
                var dll = Path.Combine(RelayCluster.RepositoryRoot, "services", project, "bin", "Release", "net10.0", project + ".dll");
                var process = await ServiceProcess.StartAsync(name, dll, RelayCluster.FreePort(), environment, logs);
                processes.Add(process);
                await sidecar.AttachAppAsync(new Uri($"http://127.0.0.1:{process.Port}/"));
                return process;
            }

            for (var i = 1; i <= routingInstances; i++)
            {
                await StartAsync("routing-" + i, "Relay.Routing", "relay-routing");
            }

            var routingSidecars = sidecars.ToArray();
            await StartAsync("fanout", "Relay.FanOut", "relay-fanout");
            var ingressA = await StartAsync("ingress-a", "Relay.Ingress", "relay-ingress");
            var ingressB = await StartAsync("ingress-b", "Relay.Ingress", "relay-ingress");

            // Several routing instances share the shards (half each) before the test publishes: the one channel's shard
            // then stays with one of them throughout.
            var owners = await SplitShardOwnersAsync(redis, routingInstances);

            await using var onA = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(ingressA, "&clientId=on-a"));
            await using var onB = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(ingressB, "&clientId=on-b"));
            await using var publisher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(ingressA, "&clientId=publisher"));
            foreach (var subscriber in new[] { onA, onB })
            {
                var ok = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "dapr:processes" });
                Assert.True(ok.GetProperty("type").GetString() == "ok", ok.GetRawText());
            }

            var receiving = Task.WhenAll(ReceiveSeqsAsync(onA, Count), ReceiveSeqsAsync(onB, Count));
            for (var sent = 0; sent < Count; sent += Round)
            {
                for (var i = 1; i <= Round; i++)
                {
                    await publisher.SendAsync(new Dictionary<string, object?> { ["type"] = "publish", ["channel"] = "dapr:processes", ["data"] = sent + i, ["ref"] = sent + i });
                }

                for (var i = 0; i < Round; i++)
                {
                    var ack = await publisher.ReceiveAsync(Patience);
                    Assert.True(ack.GetProperty("type").GetString() == "ok", ack.GetRawText());
                }
            }

            var seen = await receiving.WaitAsync(TimeSpan.FromSeconds(60));
            var expected = Enumerable.Range(1, Count).Select(static i => (long)i).ToList();
            Assert.Equal(expected, seen[0]);
            Assert.Equal(expected, seen[1]);
            await Assert.ThrowsAsync<TimeoutException>(() => onB.ReceiveMessageAsync(TimeSpan.FromSeconds(1)));
            Assert.All(sidecars, static s => Assert.Empty(s.Errors));

            // Only the instance that leases the channel's shard forwarded its messages (the other forwarded none: it
            // would have forwarded all of them again before, as each forwarded every shard).
            var forwarded = routingSidecars.Select(static s => s.PublishedBytes("relay-sequenced")).ToArray();
            Assert.True(forwarded.Max() > 0, "nothing reached the sequenced topic");
            Assert.True(forwarded.Count(static b => b > 0) == 1, $"sequenced-topic bytes per routing instance: {string.Join(", ", forwarded)} (shard owners {string.Join(' ', owners)})");
        }
        finally
        {
            foreach (var process in processes)
            {
                await process.DisposeAsync();
            }

            foreach (var sidecar in sidecars)
            {
                await sidecar.DisposeAsync();
            }
        }
    }

    // Waits until `instances` routing instances each lease an equal share of the 16 shards, the same for a second.
    private static async Task<string?[]> SplitShardOwnersAsync(RedisServer redis, int instances)
    {
        await using var connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(RedisServer.QuickClientOptions(redis.Configuration));
        var database = connection.GetDatabase();
        var deadline = DateTime.UtcNow + Patience;
        string?[]? before = null;
        while (true)
        {
            var owners = new string?[16];
            for (var shard = 0; shard < owners.Length; shard++)
            {
                owners[shard] = await database.StringGetAsync(Relay.Bus.Redis.RedisKeys.Lease(shard));
            }

            var split = owners.All(static o => o is not null) && owners.GroupBy(static o => o).Count() == instances && owners.GroupBy(static o => o).All(g => g.Count() == 16 / instances);
            if (split && before is not null && before.SequenceEqual(owners))
            {
                return owners;
            }

            Assert.True(DateTime.UtcNow < deadline, $"routing shard owners: {string.Join(' ', owners)}");
            before = split ? owners : null;
            await Task.Delay(split ? 1000 : 100);
        }
    }

    private static async Task<List<long>> ReceiveSeqsAsync(TestSocket socket, int count)
    {
        var seqs = new List<long>(count);
        while (seqs.Count < count)
        {
            var message = await socket.ReceiveAsync(Patience);
            Assert.True(message.GetProperty("type").GetString() == "message", $"after {seqs.Count} messages: {message.GetRawText()}");
            seqs.Add(message.GetProperty("seq").GetInt64());
        }

        return seqs;
    }
}
