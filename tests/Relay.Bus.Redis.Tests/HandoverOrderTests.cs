using System.Text;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// A connection keeps many publishes in flight (64 on a realtime connection). While routing shards change hands, some of
/// them find nobody listening on the shard's channel, or reach only an instance that no longer holds the shard and
/// declines: those are sent again. They must still be handled in the order they were sent, or a later message takes an
/// earlier seq (MQTT 3.1.1 §4.6, and Relay's own promise that a publisher's messages are sequenced in the order sent).
/// Buses stand for processes against one redis-server: a caller publishing on eight channels, 64 in flight on each, and
/// routing instances started and stopped under it every 400 ms. The routing side here records the order it handled
/// each channel's publishes in (a channel's log), answering only for shards its bus holds, as the Redis authority does.
/// </summary>
public sealed class HandoverOrderTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private const int Channels = 8;
    private const int InFlight = 64;
    private static readonly TimeSpan s_churnFor = TimeSpan.FromSeconds(8);

    private readonly TestBuses _buses = new(redis.Server, TimeSpan.FromSeconds(20));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _buses.DisposeAsync().AsTask();

    [Fact(Timeout = 120_000)]
    public async Task PipelinedPublishes_WhileShardsChangeHands_AreHandledInTheOrderSent()
    {
        var prefix = "order-" + Guid.NewGuid().ToString("N")[..8];
        var logs = new ChannelLogs();
        var caller = _buses.Make();
        var serving = new List<IDisposable>();
        var first = _buses.Make();
        serving.Add(first.ServeRouting(new Sequencer(first, logs)));
        using (var ready = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
        {
            while (await caller.SendToRoutingAsync(Publish(prefix + "-probe", 0), ready.Token) is not PublishReply)
            {
                await Task.Delay(100, ready.Token);
            }
        }

        // Routing instances come and go: start one, stop the oldest, with two or three serving at any time.
        using var stop = new CancellationTokenSource(s_churnFor);
        var handovers = 0;
        var churn = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(400);
                var next = _buses.Make();
                serving.Add(next.ServeRouting(new Sequencer(next, logs)));
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

        var failures = new List<string>();
        for (var c = 0; c < Channels; c++)
        {
            var channel = $"{prefix}-{c}";
            var (count, acknowledged) = sent[c];
            var handled = logs.Of(channel);
            var outOfOrder = handled.Zip(handled.Skip(1)).Count(pair => pair.Second <= pair.First);
            if (outOfOrder > 0)
            {
                var at = handled.Zip(handled.Skip(1)).First(pair => pair.Second <= pair.First);
                failures.Add($"{channel}: {outOfOrder} publishes handled before one sent earlier (first: {at.Second} after {at.First}) of {handled.Count}");
            }

            if (acknowledged.Count != count)
            {
                failures.Add($"{channel}: {count - acknowledged.Count} of {count} publishes were not acknowledged (first: {acknowledged.FirstRefusal})");
            }
        }

        foreach (var d in serving)
        {
            d.Dispose();
        }

        output.WriteLine($"{sent.Sum(s => s.Count)} publishes on {Channels} channels, {handovers} routing instances started and stopped");
        Assert.True(handovers >= 10, $"only {handovers} handovers");
        Assert.True(sent.Sum(s => s.Count) >= 2_000, $"only {sent.Sum(s => s.Count)} publishes were sent");
        Assert.True(failures.Count == 0, string.Join("; ", failures));
    }

    // Publishes 1, 2, 3, … on a channel with InFlight awaiting their answers at any time, until stopped; returns how many
    // were sent and how many were acknowledged.
    private static async Task<(int Count, Answers Acknowledged)> PublishUntilAsync(RedisBus caller, string channel, CancellationToken stop)
    {
        var waiting = new Queue<Task<RoutingReply>>();
        var count = 0;
        var answers = new Answers();
        while (!stop.IsCancellationRequested)
        {
            waiting.Enqueue(caller.SendToRoutingAsync(Publish(channel, ++count), CancellationToken.None).AsTask());
            if (waiting.Count >= InFlight)
            {
                answers.Add(await waiting.Dequeue().WaitAsync(TimeSpan.FromSeconds(30)));
            }
        }

        while (waiting.Count > 0)
        {
            answers.Add(await waiting.Dequeue().WaitAsync(TimeSpan.FromSeconds(30)));
        }

        return (count, answers);
    }

    private sealed class Answers
    {
        public int Count { get; private set; }

        public RoutingReply? FirstRefusal { get; private set; }

        public void Add(RoutingReply reply)
        {
            if (reply is PublishReply)
            {
                Count++;
            }
            else
            {
                FirstRefusal ??= reply;
            }
        }
    }

    private static PublishRequest Publish(string channel, int number) =>
        new("test", channel, [new PublishItem(Name: null, Encoding.ASCII.GetBytes(number.ToString(System.Globalization.CultureInfo.InvariantCulture)), DataIsJson: true, Id: null)], ClientId: null, TraceParent: null);

    // What every routing instance appended, per channel, in the order handled (the channels' logs).
    private sealed class ChannelLogs
    {
        private readonly Dictionary<string, List<int>> _logs = [];

        public long Append(string channel, int number)
        {
            lock (_logs)
            {
                if (!_logs.TryGetValue(channel, out var log))
                {
                    _logs[channel] = log = [];
                }

                log.Add(number);
                return log.Count;
            }
        }

        public List<int> Of(string channel)
        {
            lock (_logs)
            {
                return _logs.TryGetValue(channel, out var log) ? [.. log] : [];
            }
        }
    }

    // Appends a publish when its bus holds the channel's shard, else answers "not mine", as the Redis authority does.
    private sealed class Sequencer(RedisBus bus, ChannelLogs logs) : IRoutingHandler
    {
        public ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken)
        {
            if (bus.FenceFor(request.App, request.Channel) is null)
            {
                return ValueTask.FromResult<RoutingReply>(NotOwnerReply.Instance);
            }

            var publish = (PublishRequest)request;
            var number = int.Parse(Encoding.ASCII.GetString(publish.Items[0].Data.Span), System.Globalization.CultureInfo.InvariantCulture);
            var seq = logs.Append(request.Channel, number);
            return ValueTask.FromResult<RoutingReply>(new PublishReply([seq], "e1"));
        }
    }
}
