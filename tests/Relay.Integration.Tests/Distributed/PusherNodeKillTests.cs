using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// pusher-js on two ingress processes over one redis-server, the Pusher HTTP API publishing at rate, and one ingress
/// killed (SIGKILL) mid-stream: the other node's clients, on each transport, go on undisturbed and see the dead node's
/// presence members leave within the bound docs/pusher.md gives (<c>Relay:Redis:NodeTtl</c> plus one fan-out sweep);
/// the dead node's clients, sent to B by a balancer (a <see cref="TcpForwarder"/>), connect again and get events.
/// </summary>
public sealed class PusherNodeKillTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static readonly string[] Transports = ["ws", "xhr_streaming", "xhr_polling"];

    /// <summary>Padding of each event's data (~120 bytes an event): the fallbacks cross pusher-js's 256 K response limit several times.</summary>
    private static readonly string Padding = new('.', 100);

    /// <summary>
    /// <paramref name="split"/>: the ingress processes of <see cref="RelayCluster"/> (routing and fan-out run apart and
    /// live on); else two standalone hosts, so A takes its routing and fan-out shards with it and B takes them over.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task NodeKilledMidStream_OtherNodesClients_GetEveryAcknowledgedEventOnceInOrder_AndSeeItsMembersLeave(bool split)
    {
        await using var cluster = await Nodes.StartAsync(split, output);
        var suffix = Guid.NewGuid().ToString("N")[..10];
        var news = "news-kill-" + suffix;
        var room = "presence-kill-" + suffix;

        // On B: pusher-js on each transport, counting the events of both channels. On A: two members of the room.
        var atB = new List<PusherScript>();
        var atA = new List<PusherScript>();
        try
        {
            foreach (var transport in Transports)
            {
                var client = Client(cluster.IngressB.Port, "b-" + transport, transport);
                atB.Add(client);
                Assert.Equal(transport, (await client.NextAsync("connected", Timeout)).GetProperty("transport").GetString());
                client.Send(new { op = "tally", channel = news });
                await client.NextAsync("subscribed", Timeout, news);
                client.Send(new { op = "tally", channel = room });
                await client.NextAsync("subscribed", Timeout, room);
            }

            // A's clients reach it through a balancer, which sends them to B once A is out of its pool.
            await using var balancer = TcpForwarder.Start(cluster.IngressA.Port);
            foreach (var transport in new[] { "ws", "xhr_polling" })
            {
                var client = Client(balancer.Port, "a-" + transport, transport);
                atA.Add(client);
                await client.NextAsync("connected", Timeout);
                client.Send(new { op = "tally", channel = news });
                await client.NextAsync("subscribed", Timeout, news);
                client.Send(new { op = "tally", channel = room });
                await client.NextAsync("subscribed", Timeout, room);
            }

            string[] membersOfA = ["a-ws", "a-xhr_polling"];
            await Task.WhenAll(atB.Select(c => MembersAsync(c, "member_added", room, membersOfA)));

            // Four publishers through B (two a channel, each waiting for its answer: its events are in its order) and
            // one through A; the test's own clock paces them.
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            using var stop = new CancellationTokenSource();
            var nodeB = new Uri($"http://127.0.0.1:{cluster.IngressB.Port}/");
            var nodeA = new Uri($"http://127.0.0.1:{cluster.IngressA.Port}/");
            Publisher[] publishers =
            [
                .. Enumerable.Range(1, 8).Select(i => new Publisher(i, nodeB, i % 2 == 0 ? news : room)),
                new Publisher(9, nodeA, news, PerSecond: 100, StopOnFailure: true),
            ];
            var throughB = publishers.Where(p => p.Node == nodeB).ToArray();
            var clock = Stopwatch.StartNew();
            var running = publishers.Select(p => Task.Run(() => p.RunAsync(http, stop.Token), CancellationToken.None)).ToArray();

            await WaitForAsync(() => throughB.Sum(static p => p.Acknowledged.Count) >= 4_000 || running.Any(static t => t.IsCompleted && !t.IsCompletedSuccessfully), "4,000 events acknowledged through B", throughB);
            var beforeKill = throughB.Sum(static p => p.Acknowledged.Count);
            var killedAt = clock.Elapsed;
            cluster.IngressA.Kill();
            output.WriteLine($"ingress A killed at {killedAt.TotalSeconds:F1} s, {beforeKill} events acknowledged through B");

            // A's members leave for every B client within NodeTtl (2 s here) and one sweep (FanOutLeaseTtl / 3, 0.5 s).
            var left = await Task.WhenAll(atB.Select(async c =>
            {
                await MembersAsync(c, "member_removed", room, membersOfA);
                return clock.Elapsed - killedAt;
            }));
            output.WriteLine($"A's members removed for B's clients {string.Join(", ", left.Select(static t => $"{t.TotalSeconds:F1} s"))} after the kill");
            Assert.True(left.Max() < TimeSpan.FromSeconds(15), $"A's members left B's clients {left.Max().TotalSeconds:F1} s after the kill; the bound is NodeTtl (2 s here) and a sweep, 15 s with room for a loaded machine");

            // Then the balancer takes A out: its clients connect again, now to B, as new connections (Pusher has no
            // recovery: what they missed is lost), and get the events published after.
            balancer.TargetPort = cluster.IngressB.Port;
            await Task.WhenAll(atA.Select(async c =>
            {
                await c.NextAsync("connected", Timeout);
                await c.NextAsync("subscribed", Timeout, news);
                var after = await CountAsync(c, news);
                while (await CountAsync(c, news) < after + 100)
                {
                    await Task.Delay(250);
                }
            })).WaitAsync(Timeout);
            output.WriteLine($"A's clients connected again through B and got events {(clock.Elapsed - killedAt).TotalSeconds:F1} s after the kill");

            await WaitForAsync(() => throughB.Sum(static p => p.Acknowledged.Count) >= beforeKill + 6_000, "6,000 more events acknowledged through B after the kill", throughB);
            await stop.CancelAsync();
            await Task.WhenAll(running).WaitAsync(Timeout);
            var elapsed = clock.Elapsed;
            var total = throughB.Sum(static p => p.Acknowledged.Count);
            output.WriteLine($"{total} events acknowledged through B in {elapsed.TotalSeconds:F1} s ({beforeKill / killedAt.TotalSeconds:F0} a second before the kill, "
                + $"{(total - beforeKill) / (elapsed - killedAt).TotalSeconds:F0} after), {publishers[^1].Acknowledged.Count} through A");

            // No error through B: every request answered 200. Where A also owned routing shards, a publish B had sent to
            // one of them as A died is answered 503 after Relay:Redis:RequestTimeout (the bus does not send it again to
            // the shard's next owner): unacknowledged, so it may or may not arrive, once at most.
            foreach (var publisher in throughB)
            {
                var allowed = split ? new List<string>() : publisher.Failures.Where(static f => f.Contains(": 503 ", StringComparison.Ordinal) && f.Contains("did not answer", StringComparison.Ordinal)).ToList();
                foreach (var failure in publisher.Failures)
                {
                    output.WriteLine($"publisher {publisher.Id} through B: {failure}");
                }

                Assert.True(publisher.Failures.Count == allowed.Count, $"publisher {publisher.Id} through B: {publisher.Failures.Count} failures, first: {publisher.Failures.FirstOrDefault()}");
            }

            // Every event acknowledged through B, once, in its publisher's order, on each transport; A's, once and in order.
            foreach (var (client, transport) in atB.Zip(Transports))
            {
                foreach (var channel in new[] { news, room })
                {
                    var expected = publishers.Where(p => p.Channel == channel).ToArray();
                    var keys = await ReceivedAsync(client, channel, [.. expected.Where(p => p.Node == nodeB)]);
                    foreach (var publisher in expected)
                    {
                        var received = keys.Where(k => k.Publisher == publisher.Id).Select(static k => k.Number).ToList();
                        var summary = $"{transport} on {channel}, publisher {publisher.Id}: {publisher.Acknowledged.Count} acknowledged, {received.Count} received ({received.Distinct().Count()} distinct)";
                        if (publisher.Node == nodeB)
                        {
                            var acknowledged = received.Where(n => !publisher.Failed.Contains(n)).ToList();
                            Assert.True(acknowledged.SequenceEqual(publisher.Acknowledged), summary + $", first difference at {FirstDifference(acknowledged, publisher.Acknowledged)}");
                        }

                        // Pusher has no recovery: what A took just before it died may be lost; nothing is doubled or reordered.
                        Assert.True(received.Zip(received.Skip(1)).All(static p => p.First < p.Second), summary + ": duplicated or out of order");
                    }
                }

                var lines = client.Output.Split('\n');
                Assert.True(lines.Count(static l => l.Contains("\"kind\":\"connected\"", StringComparison.Ordinal)) == 1, $"{transport} on B connected again:\n{client.LastLines(20)}");
                Assert.DoesNotContain(lines, static l => l.Contains("\"kind\":\"error\"", StringComparison.Ordinal) || l.Contains("\"kind\":\"exception\"", StringComparison.Ordinal));
            }

            // B's view of the room: its own three members and A's two, connected again.
            using var users = await http.SendAsync(PusherHttp.Request(nodeB, RelayServer.Key, HttpMethod.Get, $"/apps/test/channels/{room}/users")).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, users.StatusCode);
            var ids = JsonDocument.Parse(await users.Content.ReadAsStringAsync()).RootElement.GetProperty("users").EnumerateArray().Select(static u => u.GetProperty("id").GetString()).Order(StringComparer.Ordinal);
            Assert.Equal(Transports.Select(static t => "b-" + t).Concat(["a-ws", "a-xhr_polling"]).Order(StringComparer.Ordinal), ids);
            Assert.DoesNotContain("fail:", cluster.IngressB.Tail(), StringComparison.Ordinal);
        }
        finally
        {
            foreach (var client in atB.Concat(atA))
            {
                client.Dispose();
            }
        }
    }

    private static PusherScript Client(int port, string user, string transport) =>
        PusherScript.Start("pusher-client.cjs", PusherScript.Options(port, RelayServer.Key, new { user = new { user_id = user, user_info = new { user } }, transports = new[] { transport } }));

    /// <summary>Two ingress nodes over one redis-server, each its own process: A is killed, B lives.</summary>
    private sealed class Nodes : IAsyncDisposable
    {
        private RelayCluster? _cluster;
        private RedisServer? _redis;
        private readonly List<ServiceProcess> _hosts = [];

        public ServiceProcess IngressA { get; private set; } = null!;

        public ServiceProcess IngressB { get; private set; } = null!;

        public static async Task<Nodes> StartAsync(bool split, ITestOutputHelper output)
        {
            var nodes = new Nodes();
            try
            {
                if (split)
                {
                    nodes._cluster = await RelayCluster.StartAsync();
                    nodes._cluster.Output = output.WriteLine;
                    (nodes.IngressA, nodes.IngressB) = (nodes._cluster.IngressA, nodes._cluster.IngressB);
                    return nodes;
                }

                // The cluster's timings, on two standalone hosts.
                nodes._redis = await RedisServer.StartAsync();
                foreach (var name in new[] { "standalone-a", "standalone-b" })
                {
                    var settings = RelayCluster.BusSettings(nodes._redis.Configuration);
                    settings["Relay__Ingress__NodeId"] = name;
                    nodes._hosts.Add(await ServiceProcess.StartStandaloneAsync(settings));
                }

                (nodes.IngressA, nodes.IngressB) = (nodes._hosts[0], nodes._hosts[1]);
                return nodes;
            }
            catch
            {
                await nodes.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var host in _hosts)
            {
                await host.DisposeAsync();
            }

            if (_cluster is not null)
            {
                await _cluster.DisposeAsync();
            }

            if (_redis is not null)
            {
                await _redis.DisposeAsync();
            }
        }
    }

    /// <summary>Waits until <paramref name="client"/> has reported <paramref name="kind"/> for each of <paramref name="ids"/> on <paramref name="channel"/>, in any order.</summary>
    private static async Task MembersAsync(PusherScript client, string kind, string channel, IReadOnlyCollection<string> ids)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (!seen.IsSupersetOf(ids))
        {
            var line = await client.NextAsync(e => e.GetProperty("kind").GetString() == kind && e.GetProperty("channel").GetString() == channel && ids.Contains(e.GetProperty("id").GetString() ?? ""), Timeout);
            seen.Add(line.GetProperty("id").GetString()!);
        }
    }

    private static async Task WaitForAsync(Func<bool> condition, string what, IEnumerable<Publisher> publishers)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(90))
            {
                throw new TimeoutException($"no {what} within 90 s: {string.Join("; ", publishers.Select(static p => $"publisher {p.Id}: {p.Acknowledged.Count} acknowledged, {p.Failures.Count} failures {p.Failures.FirstOrDefault()}"))}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>
    /// The (publisher, number) of the events <paramref name="client"/> counted on <paramref name="channel"/>, in the order
    /// received, once the last event each of <paramref name="publishers"/> had acknowledged came, or nothing more for 30 s.
    /// </summary>
    private static async Task<List<(int Publisher, int Number)>> ReceivedAsync(PusherScript client, string channel, IReadOnlyList<Publisher> publishers)
    {
        var (count, since) = (-1, Stopwatch.StartNew());
        while (true)
        {
            client.Send(new { op = "report", channel, keys = true });
            var report = await client.NextAsync("tally", Timeout, channel);
            var now = report.GetProperty("count").GetInt32();
            List<(int Publisher, int Number)> keys = [.. report.GetProperty("keys").EnumerateArray().Select(static k =>
            {
                var key = k.GetString()!;
                var dash = key.IndexOf('-', StringComparison.Ordinal);
                return (int.Parse(key.AsSpan(0, dash), System.Globalization.CultureInfo.InvariantCulture), int.Parse(key.AsSpan(dash + 1), System.Globalization.CultureInfo.InvariantCulture));
            })];
            if (publishers.All(p => p.Acknowledged.Count == 0 || keys.Contains((p.Id, p.Acknowledged[^1]))) || since.Elapsed > TimeSpan.FromSeconds(30))
            {
                return keys;
            }

            if (now != count)
            {
                (count, since) = (now, Stopwatch.StartNew());
            }

            await Task.Delay(250);
        }
    }

    private static async Task<int> CountAsync(PusherScript client, string channel)
    {
        client.Send(new { op = "report", channel });
        return (await client.NextAsync("tally", Timeout, channel)).GetProperty("count").GetInt32();
    }

    private static string FirstDifference(List<int> received, List<int> expected)
    {
        var i = 0;
        while (i < received.Count && i < expected.Count && received[i] == expected[i])
        {
            i++;
        }

        return $"index {i}: received {(i < received.Count ? received[i] : "nothing")}, expected {(i < expected.Count ? expected[i] : "nothing")}";
    }

    /// <summary>
    /// One sequential publisher: <c>POST /apps/test/events</c> of data <c>p{id}-{n}…</c> to <paramref name="Channel"/>
    /// through <paramref name="Node"/>, the next sent once the last is answered, at most <paramref name="PerSecond"/>.
    /// </summary>
    private sealed record Publisher(int Id, Uri Node, string Channel, int PerSecond = 250, bool StopOnFailure = false)
    {
        /// <summary>The numbers answered 200, in order (read once the publisher stopped, or as a count while it runs).</summary>
        public List<int> Acknowledged { get; } = [];

        public List<string> Failures { get; } = [];

        /// <summary>The numbers not answered 200 (a failure above each).</summary>
        public List<int> Failed { get; } = [];

        public async Task RunAsync(HttpClient http, CancellationToken stop)
        {
            var clock = Stopwatch.StartNew();
            for (var n = 1; !stop.IsCancellationRequested; n++)
            {
                var due = TimeSpan.FromSeconds((n - 1) / (double)PerSecond);
                if (due - clock.Elapsed > TimeSpan.FromMilliseconds(2))
                {
                    await Task.Delay(due - clock.Elapsed, CancellationToken.None);
                }

                var body = JsonSerializer.Serialize(new { name = "tick", channel = Channel, data = $"p{Id}-{n} {Padding}" });
                try
                {
                    using var response = await http.SendAsync(PusherHttp.Request(Node, RelayServer.Key, HttpMethod.Post, "/apps/test/events", body), CancellationToken.None);
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        lock (Acknowledged)
                        {
                            Acknowledged.Add(n);
                        }

                        continue;
                    }

                    Failures.Add($"{n}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(CancellationToken.None)}");
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    Failures.Add($"{n}: {e.Message}");
                }

                Failed.Add(n);

                if (StopOnFailure)
                {
                    return;
                }
            }
        }
    }
}
