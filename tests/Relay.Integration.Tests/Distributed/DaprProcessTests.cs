using Relay.Testing;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// The services as separate processes on the Dapr bus, each beside a sidecar stand-in of its own (app ids
/// <c>relay-routing</c>, <c>relay-fanout</c>, <c>relay-ingress</c>) over one redis-server, every sidecar posting each
/// delivery twice and shuffling within 8: requests cross by invocation between app ids, messages by topics between
/// consumer groups, and subscribers on both nodes still see each seq once, in order.
/// </summary>
public sealed class DaprProcessTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Services_OverRedeliveringReorderingSidecars_DeliverEachSeqOnceInOrderOnBothNodes()
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

            await StartAsync("routing", "Relay.Routing", "relay-routing");
            await StartAsync("fanout", "Relay.FanOut", "relay-fanout");
            var ingressA = await StartAsync("ingress-a", "Relay.Ingress", "relay-ingress");
            var ingressB = await StartAsync("ingress-b", "Relay.Ingress", "relay-ingress");

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
