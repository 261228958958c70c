using Relay.Bus.Redis;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// Two fan-out processes under one Dapr app id (<c>relay-fanout</c>), each beside a stand-in that reads topics with a
/// consumer of its own (the component's <c>consumerID: "{podName}"</c>), every stand-in posting each delivery twice and
/// shuffling within 8; one routing process, two ingress nodes. Two channels, one in each fan-out process's shards, get
/// thousands of publishes a second; subscribers on both nodes must see every seq of each once, in order, with one
/// fan-out process running throughout or killed (SIGKILL to its PID) mid-stream.
/// </summary>
public sealed class DaprFanOutProcessTests(ITestOutputHelper output)
{
    private const int Total = 8000;
    private const int PerSecond = 2000;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task TwoFanOutInstances_AtThousandsPerSecond_EachPassesOnItsShardsAndSubscribersGetEachSeqOnceInOrder()
    {
        await using var services = await DaprServices.StartAsync(output);
        var (counts, fanOutMessages) = await services.PublishAndFollowAsync(killAt: null);

        // Each instance handed its role only the messages of the shards it leases: one channel each, never both.
        output.WriteLine($"fan-out messages: {string.Join(", ", fanOutMessages)}; per channel {string.Join(", ", counts)}");
        Assert.Equal(counts.Order(), fanOutMessages.Order());
    }

    [Fact]
    public async Task FanOutInstanceKilledMidStream_NoAcknowledgedMessageIsLost_EachOnceInOrder()
    {
        await using var services = await DaprServices.StartAsync(output);
        await services.PublishAndFollowAsync(killAt: Total / 3);

        // The survivor took the killed one's shards.
        var owners = await services.FanOutOwnersAsync();
        Assert.True(owners.All(o => o is not null) && owners.Distinct().Count() == 1, $"fan-out shard owners after the kill: {string.Join(' ', owners)}");
    }

    private sealed class DaprServices : IAsyncDisposable
    {
        private readonly ITestOutputHelper _output;
        private readonly List<DaprSidecar> _sidecars = [];
        private readonly List<ServiceProcess> _processes = [];
        private readonly string _logs = Directory.CreateTempSubdirectory("relay-dapr-fanout-").FullName;
        private RedisServer _redis = null!;

        private DaprServices(ITestOutputHelper output) => _output = output;

        public ServiceProcess[] FanOuts { get; private set; } = [];

        public ServiceProcess IngressA { get; private set; } = null!;

        public ServiceProcess IngressB { get; private set; } = null!;

        public static async Task<DaprServices> StartAsync(ITestOutputHelper output)
        {
            var services = new DaprServices(output);
            try
            {
                services._redis = await RedisServer.StartAsync();
                await services.StartAsync("routing", "Relay.Routing", "relay-routing");
                services.FanOuts = [await services.StartAsync("fanout-1", "Relay.FanOut", "relay-fanout"), await services.StartAsync("fanout-2", "Relay.FanOut", "relay-fanout")];
                services.IngressA = await services.StartAsync("ingress-a", "Relay.Ingress", "relay-ingress");
                services.IngressB = await services.StartAsync("ingress-b", "Relay.Ingress", "relay-ingress");
                return services;
            }
            catch
            {
                await services.DisposeAsync();
                throw;
            }
        }

        private async Task<ServiceProcess> StartAsync(string name, string project, string appId)
        {
            var sidecar = await DaprSidecar.StartAsync(appId, _redis.Configuration);
            _sidecars.Add(sidecar);
            sidecar.Copies = 2;
            sidecar.ReorderWindow = 8;

            // consumerID "{podName}": each fan-out instance reads every message of its topics.
            sidecar.ConsumerId = name;
            var environment = ServiceProcess.TestKeysEnvironment();
            environment["Relay__Bus"] = "dapr";
            environment["Relay__Redis__Configuration"] = _redis.Configuration;
            environment["Relay__Redis__LeaseTtl"] = "00:00:01.5";
            environment["Relay__Redis__FanOutLeaseTtl"] = "00:00:01";
            environment["Relay__Dapr__HttpEndpoint"] = sidecar.HttpEndpoint.ToString();

            // Eleven processes on a shared 2-core machine: deliveries come later than 200 ms out of order at times, and a
            // node that read the gap from history at once found it trimmed (history 200 is 0.2 s of one channel here).
            environment["Relay__Dapr__ReorderHold"] = "00:00:02";
            environment["Relay__Ingress__NodeId"] = name;
            environment["Logging__Console__TimestampFormat"] = "HH:mm:ss.fff ";
            environment["Relay__Ingress__PublishRatePerSecond"] = "1000000";
            environment["Relay__Ingress__PublishBurst"] = "1000000";
            var dll = Path.Combine(RelayCluster.RepositoryRoot, "services", project, "bin", "Release", "net10.0", project + ".dll");
            var process = await ServiceProcess.StartAsync(name, dll, RelayCluster.FreePort(), environment, _logs);
            _processes.Add(process);
            await sidecar.AttachAppAsync(new Uri($"http://127.0.0.1:{process.Port}/"));
            return process;
        }

        // Publishes Total messages at PerSecond over two channels, one in each fan-out instance's shards, and follows
        // them on both nodes; with killAt, the instance leasing the first channel's shard is killed once that many are
        // acknowledged. Returns the messages per channel and each fan-out process's relay_fanout_messages_total.
        public async Task<(long[] PerChannel, long[] FanOutMessages)> PublishAndFollowAsync(int? killAt)
        {
            var owners = await SplitFanOutShardsAsync();
            var distinct = owners.Distinct().Select(static o => o!).ToArray();
            string[] channels = [ChannelOf(owners, distinct[0]), ChannelOf(owners, distinct[1])];
            _output.WriteLine($"channels {channels[0]} (shard {Shard(channels[0])}, {distinct[0]}) and {channels[1]} (shard {Shard(channels[1])}, {distinct[1]})");

            var followers = new List<Follower>();
            foreach (var ingress in new[] { IngressA, IngressB })
            {
                var follower = await Follower.StartAsync(RelayCluster.RealtimeUri(ingress, "&clientId=on-" + ingress.Name), channels);
                followers.Add(follower);
            }

            var perChannel = new long[2];
            for (var n = 1; n <= Total; n++)
            {
                perChannel[n % 2]++;
            }

            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            await using var publisher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(IngressA, "&clientId=publisher"));
            var acknowledged = new long[Total + 1];
            var publishing = PacedPublisher.PublishAsync(publisher, acknowledged, 1, Total, PerSecond, n => channels[n % 2], _output.WriteLine, stop.Token);
            var following = Task.WhenAll(followers.Select(f => f.FollowAsync(perChannel, stop.Token)));

            if (killAt is { } at)
            {
                while (Volatile.Read(ref acknowledged[at]) == 0)
                {
                    await Task.Delay(10, stop.Token);
                }

                // The instance leasing the first channel's shard: its channel's deliveries must go on from the survivor.
                var victim = InstanceProcess(distinct[0]);
                victim.Kill();
                _output.WriteLine($"killed {victim.Name} (pid {victim.ProcessId}) at {DateTime.UtcNow:HH:mm:ss.fff}");
            }

            await publishing;
            try
            {
                await following.WaitAsync(TimeSpan.FromSeconds(60));
            }
            catch (TimeoutException)
            {
                Assert.Fail($"followers did not get every message: {string.Join("; ", followers.Select(f => f.Describe()))}\n{Logs()}");
            }

            foreach (var follower in followers)
            {
                await follower.DisposeAsync();
            }

            // A killed process's sidecar could not reach it: only the others must have had no trouble.
            Assert.All(_sidecars.Where((_, i) => !_processes[i].HasExited), static s => Assert.Empty(s.Errors));
            var fanOutMessages = new long[FanOuts.Length];
            for (var i = 0; i < FanOuts.Length; i++)
            {
                fanOutMessages[i] = FanOuts[i].HasExited ? -1 : await PrometheusText.ScrapeAsync(new Uri($"http://127.0.0.1:{FanOuts[i].Port}/"), "relay_fanout_messages_total");
            }

            return (perChannel, fanOutMessages);
        }

        // The fan-out process whose Redis bus instance id is `instance` (the id starts with the machine name and PID).
        private ServiceProcess InstanceProcess(string instance) =>
            FanOuts.Single(p => instance.Contains("-" + p.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) + "-", StringComparison.Ordinal));

        private static int Shard(string channel) => RedisBus.ShardOf(RelayServer.AppId, channel, 16);

        private static string ChannelOf(string?[] owners, string owner)
        {
            for (var i = 0; ; i++)
            {
                var channel = "dapr:fan-" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (owners[Shard(channel)] == owner)
                {
                    return channel;
                }
            }
        }

        public async Task<string?[]> FanOutOwnersAsync()
        {
            await using var connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(RedisServer.QuickClientOptions(_redis.Configuration));
            var database = connection.GetDatabase();
            var owners = new string?[16];
            for (var shard = 0; shard < owners.Length; shard++)
            {
                owners[shard] = await database.StringGetAsync(RedisKeys.FanOutLease(shard));
            }

            return owners;
        }

        // Waits until the two fan-out processes each lease 8 of the 16 shards, the same for a second.
        private async Task<string?[]> SplitFanOutShardsAsync()
        {
            var deadline = DateTime.UtcNow + Patience;
            string?[]? before = null;
            while (true)
            {
                var owners = await FanOutOwnersAsync();
                var split = owners.All(static o => o is not null) && owners.GroupBy(static o => o).Count() == 2 && owners.GroupBy(static o => o).All(static g => g.Count() == 8);
                if (split && before is not null && before.SequenceEqual(owners))
                {
                    return owners;
                }

                Assert.True(DateTime.UtcNow < deadline, $"fan-out shard owners: {string.Join(' ', owners)}");
                before = split ? owners : null;
                await Task.Delay(split ? 1000 : 100);
            }
        }

        private string Logs() => string.Join("\n", _processes.Select(p => $"--- {p.Name} ---\n{p.Tail()}"));

        public async ValueTask DisposeAsync()
        {
            foreach (var process in _processes)
            {
                await process.DisposeAsync();
            }

            foreach (var sidecar in _sidecars)
            {
                await sidecar.DisposeAsync();
            }

            if (_redis is not null)
            {
                await _redis.DisposeAsync();
            }

            Directory.Delete(_logs, recursive: true);
        }
    }

    // A subscriber to both channels on one node: each message must be its channel's next seq; a disconnect fails.
    private sealed class Follower : IAsyncDisposable
    {
        private readonly TestSocket _socket;
        private readonly string[] _channels;
        private readonly long[] _last;

        private Follower(TestSocket socket, string[] channels)
        {
            _socket = socket;
            _channels = channels;
            _last = new long[channels.Length];
        }

        public static async Task<Follower> StartAsync(Uri endpoint, string[] channels)
        {
            var socket = await TestSocket.ConnectAsync(endpoint);
            foreach (var channel in channels)
            {
                var ok = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
                Assert.True(ok.GetProperty("type").GetString() == "ok", ok.GetRawText());
                Assert.Equal(0, ok.GetProperty("seq").GetInt64());
            }

            return new Follower(socket, channels);
        }

        public string Describe() => string.Join(", ", _channels.Select((c, i) => $"{c} at {Volatile.Read(ref _last[i])}"));

        public async Task FollowAsync(long[] counts, CancellationToken cancellationToken)
        {
            while (!_last.Select((last, i) => last >= counts[i]).All(static done => done))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var frame = await _socket.ReceiveAsync(Patience);
                var type = frame.GetProperty("type").GetString();
                Assert.True(type == "message", $"{Describe()}: {frame.GetRawText()}");
                var i = Array.IndexOf(_channels, frame.GetProperty("channel").GetString());
                var seq = frame.GetProperty("seq").GetInt64();
                Assert.True(seq == _last[i] + 1, $"{_channels[i]}: seq {seq} after {_last[i]} (each once, in order)");
                Volatile.Write(ref _last[i], seq);
            }

            // Nothing more: no copy of any seq after the last.
            await Assert.ThrowsAsync<TimeoutException>(() => _socket.ReceiveMessageAsync(TimeSpan.FromSeconds(1)));
        }

        public ValueTask DisposeAsync() => _socket.DisposeAsync();
    }
}
