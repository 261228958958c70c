using System.Collections.Concurrent;
using Relay.Bus.FanOut;
using Relay.Bus.Routing;
using Relay.Core.Messages;

namespace Relay.Bus.Redis.Tests.Contract;

/// <summary>
/// What every <see cref="IRelayBus"/> promises, run against each bus (as SignalR runs one suite against every
/// backplane): a routing request gets the serving handler's reply, a node gets exactly what was delivered to it in call
/// order, fan-out gets sequenced messages in seq order per channel and nodes' interest. Two bus instances stand for two
/// processes, one serving and one calling (on the in-memory bus a process's services share one instance). A networked
/// bus may drop what is sent before the serving side listens (<see cref="IRelayBus.MayLoseDeliveries"/>), so each test
/// first sends probes until one arrives, then checks the real traffic. Every wait is bounded.
/// </summary>
public abstract class RelayBusContract : IAsyncLifetime
{
    /// <summary>How long a serving side may take to start listening (a Redis bus takes its leases and subscribes).</summary>
    private static readonly TimeSpan ListenWithin = TimeSpan.FromSeconds(20);

    private static readonly TimeSpan ArriveWithin = TimeSpan.FromSeconds(20);

    private readonly List<IDisposable> _registrations = [];

    protected const string App = "contract";

    /// <summary>The serving process's bus.</summary>
    protected IRelayBus Serving { get; private set; } = null!;

    /// <summary>The calling process's bus (the same instance on a bus that lives in one process).</summary>
    protected IRelayBus Calling { get; private set; } = null!;

    /// <summary>Makes the two buses of a test.</summary>
    protected abstract Task<(IRelayBus Serving, IRelayBus Calling)> CreateBusesAsync();

    /// <summary>Releases what <see cref="CreateBusesAsync"/> made.</summary>
    protected abstract Task ReleaseBusesAsync();

    /// <summary>
    /// The serving process has registered the roles it plays: a bus that must declare them to something outside once
    /// (a Dapr app tells its sidecar its subscriptions when it starts listening) does so here. Nothing by default.
    /// </summary>
    protected virtual Task ServingRegisteredAsync() => Task.CompletedTask;

    public async Task InitializeAsync() => (Serving, Calling) = await CreateBusesAsync();

    public async Task DisposeAsync()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }

        await ReleaseBusesAsync();
    }

    [Fact]
    public async Task RoutingRequests_FromAnotherProcess_EachGetTheirOwnReply_OnEveryShard()
    {
        _registrations.Add(Serving.ServeRouting(new PositionRouting()));
        await ServingRegisteredAsync();
        using var timeout = new CancellationTokenSource(ListenWithin + ArriveWithin);
        await UntilAsync(async () => await Calling.SendToRoutingAsync(new PositionRequest(App, "probe"), timeout.Token) is PositionReply, "routing never answered");

        // 200 channels in flight at once (every shard of a sharded bus): each reply names its own request's channel.
        var replies = await Task.WhenAll(Enumerable.Range(0, 200).Select(async i =>
            (i, reply: await Calling.SendToRoutingAsync(new PositionRequest(App, $"channel-{i}"), timeout.Token))));
        foreach (var (i, reply) in replies)
        {
            var position = Assert.IsType<PositionReply>(reply).Position;
            Assert.Equal(new ChannelPosition($"epoch-of-channel-{i}", i), position);
        }
    }

    [Fact]
    public async Task NodeDeliveries_ReachThatNodeOnly_InCallOrder()
    {
        var a = new RecordingNode();
        var b = new RecordingNode();
        _registrations.Add(Serving.ServeNode("node-a", a));
        _registrations.Add(Serving.ServeNode("node-b", b));
        await ServingRegisteredAsync();
        await ProbeUntilAsync(() => Calling.DeliverToNodeAsync("node-a", Message("probe", 1)), () => a.Received.Any(m => m.Channel == "probe"), "node-a never got a delivery");

        const int Count = 500;
        for (var seq = 1; seq <= Count; seq++)
        {
            await Calling.DeliverToNodeAsync("node-a", Message("ordered", seq));
        }

        await UntilAsync(() => Task.FromResult(a.Of("ordered").Count == Count), () => $"node-a got {a.Of("ordered").Count} of {Count}");
        Assert.Equal(Enumerable.Range(1, Count).Select(static s => (long)s), a.Of("ordered").Select(static m => m.Seq));
        Assert.Empty(b.Received);
    }

    [Fact]
    public async Task SequencedMessages_ReachFanOut_InSeqOrderPerChannel()
    {
        var fanOut = new RecordingFanOut();
        _registrations.Add(Serving.ServeFanOut(fanOut));
        await ServingRegisteredAsync();
        await ProbeUntilAsync(() => Calling.PublishSequencedAsync(Message("probe", 1)), () => !fanOut.Sequenced.IsEmpty, "fan-out never got a message");

        // Three channels interleaved, 200 each, sent in seq order per channel.
        const int PerChannel = 200;
        string[] channels = ["left", "middle", "right"];
        for (var seq = 1; seq <= PerChannel; seq++)
        {
            foreach (var channel in channels)
            {
                await Calling.PublishSequencedAsync(Message(channel, seq));
            }
        }

        foreach (var channel in channels)
        {
            await UntilAsync(() => Task.FromResult(fanOut.Of(channel).Count == PerChannel), () => $"fan-out got {fanOut.Of(channel).Count} of {PerChannel} on {channel}");
            Assert.Equal(Enumerable.Range(1, PerChannel).Select(static s => (long)s), fanOut.Of(channel).Select(static m => m.Seq));
        }
    }

    [Fact]
    public async Task InterestChanges_ReachFanOut_WithTheirLatestCount()
    {
        var fanOut = new RecordingFanOut();
        _registrations.Add(Serving.ServeFanOut(fanOut));
        await ServingRegisteredAsync();

        // Counts are absolute: sending the same change again is harmless, so the probe is the change itself.
        await ProbeUntilAsync(
            () => Calling.SendInterestAsync(new InterestChange("node-a", App, "wanted", 3)),
            () => fanOut.Interest.Any(static c => c is { NodeId: "node-a", ChannelOrPattern: "wanted", Subscribers: 3 }),
            "fan-out never heard node-a's interest");
        await Calling.SendInterestAsync(new InterestChange("node-a", App, "wanted", 0));
        await UntilAsync(
            () => Task.FromResult(fanOut.Interest.LastOrDefault(static c => c.ChannelOrPattern == "wanted") is { Subscribers: 0 }),
            () => "fan-out never heard node-a's interest drop to 0");
    }

    protected static RelayMessage Message(string channel, long seq) => new()
    {
        App = App,
        Channel = channel,
        Seq = seq,
        Epoch = "e1",
        Data = "1"u8.ToArray(),
        Timestamp = 1,
    };

    // Sends probes (at most one each 200 ms) until `arrived`; then the serving side listens.
    private static async Task ProbeUntilAsync(Func<ValueTask> probe, Func<bool> arrived, string failure)
    {
        var deadline = DateTime.UtcNow + ListenWithin;
        while (!arrived())
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            await probe();
            for (var i = 0; i < 20 && !arrived(); i++)
            {
                await Task.Delay(10);
            }
        }
    }

    private static Task UntilAsync(Func<Task<bool>> done, string failure) => UntilAsync(done, () => failure);

    private static async Task UntilAsync(Func<Task<bool>> done, Func<string> failure)
    {
        var deadline = DateTime.UtcNow + ArriveWithin;
        while (!await done())
        {
            Assert.True(DateTime.UtcNow < deadline, failure());
            await Task.Delay(20);
        }
    }

    private sealed class PositionRouting : IRoutingHandler
    {
        public ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken) =>
            ValueTask.FromResult<RoutingReply>(request is PositionRequest { Channel: var channel }
                ? new PositionReply(new ChannelPosition("epoch-of-" + channel, channel.StartsWith("channel-", StringComparison.Ordinal) ? long.Parse(channel["channel-".Length..], System.Globalization.CultureInfo.InvariantCulture) : 0))
                : new ErrorReply(new Core.Protocol.RelayError(50000, "unexpected request")));
    }

    private sealed class RecordingNode : INodeHandler
    {
        public ConcurrentQueue<RelayMessage> Received { get; } = new();

        public List<RelayMessage> Of(string channel) => [.. Received.Where(m => m.Channel == channel)];

        public ValueTask OnDeliverAsync(RelayMessage message)
        {
            Received.Enqueue(message);
            return ValueTask.CompletedTask;
        }
    }

    private sealed class RecordingFanOut : IFanOutHandler
    {
        public ConcurrentQueue<RelayMessage> Sequenced { get; } = new();

        public ConcurrentQueue<InterestChange> Interest { get; } = new();

        public List<RelayMessage> Of(string channel) => [.. Sequenced.Where(m => m.Channel == channel)];

        public ValueTask OnSequencedAsync(RelayMessage message)
        {
            Sequenced.Enqueue(message);
            return ValueTask.CompletedTask;
        }

        public ValueTask OnInterestAsync(InterestChange change)
        {
            Interest.Enqueue(change);
            return ValueTask.CompletedTask;
        }

        public ValueTask OnNodeGoneAsync(string nodeId) => ValueTask.CompletedTask;

        public ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken) =>
            ValueTask.FromResult<IReadOnlyList<ChannelCount>>([]);
    }
}
