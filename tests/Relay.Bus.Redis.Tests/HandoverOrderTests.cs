using System.Text;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Namespaces;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// A connection keeps many publishes in flight (64 on a realtime connection). While routing shards change hands, some of
/// them find nobody listening on the shard's channel, or reach only an instance that no longer holds the shard and
/// declines: those are sent again. They must still be stored in the order they were sent, or a later message takes an
/// earlier seq (MQTT 3.1.1 §4.6, and Relay's own promise that a publisher's messages are sequenced in the order sent),
/// and each once, even when an owner that stalled past the caller's resend stores its copy late.
/// Buses stand for processes against one redis-server: a caller publishing on eight channels, 64 in flight on each, and
/// routing instances started and stopped under it every 400 ms, each serving the Redis channel authority (the one the
/// routing service runs); each channel's history in Redis is then read back in seq order.
/// </summary>
public sealed class HandoverOrderTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private const int Channels = 8;
    private const int InFlight = 64;
    private const string App = "test";
    private static readonly TimeSpan s_churnFor = TimeSpan.FromSeconds(8);

    // Churn goes on past s_churnFor until the test's handovers took place (a starved machine starts instances slowly: 8 in
    // 8 s once on one core shared with another test run), but never past this.
    private static readonly TimeSpan s_churnAtMost = TimeSpan.FromSeconds(30);

    // An owner that stalls this long with a request in hand: past the caller's resend of an unanswered attempt (2 s).
    private static readonly TimeSpan s_stall = TimeSpan.FromSeconds(2.6);

    private static readonly NamespacePolicies s_namespaces = new(new NamespacesOptions
    {
        Defaults = new NamespaceOptions { HistorySize = 1_000_000, HistoryTtl = TimeSpan.FromHours(1) },
    });

    private readonly TestBuses _buses = new(redis.Server, TimeSpan.FromSeconds(20));
    private int _handled;

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _buses.DisposeAsync().AsTask();

    [Fact(Timeout = 120_000)]
    public Task PipelinedPublishes_WhileShardsChangeHands_AreStoredOnceInTheOrderSent() => ChurnAsync(stallEvery: 0, minHandovers: 10);

    // One request in 4,000 holds its routing instance's shard queue for 2.6 s before the authority sees it: the caller
    // sends it again meanwhile, often to the next owner, and the stalled copy then reaches Redis too.
    [Fact(Timeout = 120_000)]
    public Task PipelinedPublishes_WhileOwnersStallPastTheResend_AreStoredOnceInTheOrderSent() => ChurnAsync(stallEvery: 4_000, minHandovers: 5);

    private async Task ChurnAsync(int stallEvery, int minHandovers)
    {
        var prefix = "order-" + Guid.NewGuid().ToString("N")[..8];
        var caller = _buses.Make();
        var serving = new List<IDisposable>();
        var first = _buses.Make();
        serving.Add(first.ServeRouting(Handler(first, stallEvery)));
        using (var ready = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
        {
            while (await caller.SendToRoutingAsync(Publish(prefix + "-probe", 0), ready.Token) is not PublishReply)
            {
                await Task.Delay(100, ready.Token);
            }
        }

        // Routing instances come and go: start one, stop the oldest, with two or three serving at any time.
        using var stop = new CancellationTokenSource(s_churnAtMost);
        var handovers = 0;
        var churning = System.Diagnostics.Stopwatch.StartNew();
        var churn = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                if (churning.Elapsed >= s_churnFor && handovers >= minHandovers)
                {
                    await stop.CancelAsync();
                    break;
                }

                await Task.Delay(400);
                var next = _buses.Make();
                serving.Add(next.ServeRouting(Handler(next, stallEvery)));
                if (serving.Count > 2)
                {
                    serving[0].Dispose();
                    serving.RemoveAt(0);
                }

                handovers++;
            }
        });

        var publishers = Enumerable.Range(0, Channels).Select(c => PublishUntilAsync(caller, $"{prefix}-{c}", stop.Token)).ToList();
        var sent = await Task.WhenAll(publishers);
        await churn;

        var log = new RedisChannelLog(caller.Database);
        var failures = new List<string>();
        for (var c = 0; c < Channels; c++)
        {
            var channel = $"{prefix}-{c}";
            var (count, answers) = sent[c];
            var stored = await StoredAsync(log, channel);
            var outOfOrder = stored.Zip(stored.Skip(1)).Count(pair => pair.Second <= pair.First);
            if (outOfOrder > 0)
            {
                var at = stored.Zip(stored.Skip(1)).First(pair => pair.Second <= pair.First);
                failures.Add($"{channel}: {outOfOrder} publishes stored after one sent later or twice (first: {at.Second} after {at.First}) of {stored.Count}");
            }

            var missing = answers.Acknowledged.Except(stored).ToList();
            if (missing.Count > 0)
            {
                failures.Add($"{channel}: {missing.Count} acknowledged publishes are not in its history (first: {missing.Min()})");
            }

            if (answers.Acknowledged.Count != count)
            {
                failures.Add($"{channel}: {count - answers.Acknowledged.Count} of {count} publishes were not acknowledged (first: {answers.FirstRefusal})");
            }
        }

        foreach (var d in serving)
        {
            d.Dispose();
        }

        output.WriteLine($"{sent.Sum(s => s.Count)} publishes on {Channels} channels, {handovers} routing instances started and stopped");
        Assert.True(handovers >= minHandovers, $"only {handovers} handovers");
        Assert.True(sent.Sum(s => s.Count) >= 2_000, $"only {sent.Sum(s => s.Count)} publishes were sent");
        Assert.True(failures.Count == 0, string.Join("; ", failures));
    }

    // The Redis channel authority on this bus; with stallEvery, every stallEvery-th request (counted over every instance of
    // the test) first holds its shard's queue for s_stall, as a routing process paused by the machine would.
    private IRoutingHandler Handler(RedisBus bus, int stallEvery)
    {
        var authority = new RedisChannelAuthority(bus, s_namespaces);
        return stallEvery == 0 ? authority : new Stalling(authority, () => Interlocked.Increment(ref _handled) % stallEvery == 0);
    }

    // The numbers a channel's history holds, in seq order (DrainedRequestTests reads its channel with it too).
    internal static async Task<List<int>> StoredAsync(RedisChannelLog log, string channel)
    {
        var numbers = new List<int>();
        for (long after = 0; ;)
        {
            var read = await log.ReadAfterAsync(App, channel, after, 1_000);
            foreach (var entry in read.Messages)
            {
                var message = BusCodec.DecodeBody(entry.Payload, entry.Seq, entry.Timestamp, read.Epoch, presenceAction: null);
                numbers.Add(int.Parse(Encoding.ASCII.GetString(message.Data.Span), System.Globalization.CultureInfo.InvariantCulture));
                after = entry.Seq;
            }

            if (read.Messages.Count == 0 || after >= read.Seq)
            {
                return numbers;
            }
        }
    }

    // Publishes 1, 2, 3, … on a channel with InFlight awaiting their answers at any time, until stopped; returns how many
    // were sent and which were acknowledged.
    private static async Task<(int Count, Answers Answers)> PublishUntilAsync(RedisBus caller, string channel, CancellationToken stop)
    {
        var waiting = new Queue<(int Number, Task<RoutingReply> Reply)>();
        var count = 0;
        var answers = new Answers();
        while (!stop.IsCancellationRequested)
        {
            count++;
            waiting.Enqueue((count, caller.SendToRoutingAsync(Publish(channel, count), CancellationToken.None).AsTask()));
            if (waiting.Count >= InFlight)
            {
                var (number, reply) = waiting.Dequeue();
                answers.Add(number, await reply.WaitAsync(TimeSpan.FromSeconds(30)));
            }
        }

        while (waiting.Count > 0)
        {
            var (number, reply) = waiting.Dequeue();
            answers.Add(number, await reply.WaitAsync(TimeSpan.FromSeconds(30)));
        }

        return (count, answers);
    }

    private sealed class Answers
    {
        public HashSet<int> Acknowledged { get; } = [];

        public RoutingReply? FirstRefusal { get; private set; }

        public void Add(int number, RoutingReply reply)
        {
            if (reply is PublishReply)
            {
                Acknowledged.Add(number);
            }
            else
            {
                FirstRefusal ??= reply;
            }
        }
    }

    internal static PublishRequest Publish(string channel, int number) =>
        new(App, channel, [new PublishItem(Name: null, Encoding.ASCII.GetBytes(number.ToString(System.Globalization.CultureInfo.InvariantCulture)), DataIsJson: true, Id: null)], ClientId: null, TraceParent: null);

    // Holds the calling thread (the shard channel's queue) before handing the request on, when told to.
    private sealed class Stalling(IRoutingHandler inner, Func<bool> stallNow) : IRoutingHandler
    {
        public ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken)
        {
            if (stallNow())
            {
                Thread.Sleep(s_stall);
            }

            return inner.HandleAsync(request, cancellationToken);
        }
    }
}
