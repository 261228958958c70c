using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Relay.Bus.FanOut;
using Relay.Core.Messages;
using Relay.Testing;
using StackExchange.Redis;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// Fan-out's shard leases on fake clocks: each fan-out process's lease loop ticks only when its clock is advanced, so the
/// give-back and lapse rules are checked step by step, without waiting out lease times (the leases in Redis are real
/// and long: 60 s, far more than a test takes). What each step did is read from Redis itself: which processes listen on
/// a shard's channel (<c>PUBSUB NUMSUB</c>), and the resync announcements nodes get.
/// </summary>
public sealed class FanOutLeaseClockTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private static readonly TimeSpan s_ttl = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan s_tick = s_ttl / 3;
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(20);

    private readonly TestBuses _buses = new(redis.Server, TimeSpan.FromSeconds(5));
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private readonly List<IDisposable> _serving = [];
    private IConnectionMultiplexer? _watcher;

    public async Task InitializeAsync()
    {
        // Leases, fences and instances another test of the class left would stand in this one's way.
        await RedisCommand.SendAsync(redis.Server.Port, "FLUSHALL");
        _watcher = await ConnectionMultiplexer.ConnectAsync(RedisServer.QuickClientOptions(redis.Server.Configuration));
    }

    public async Task DisposeAsync()
    {
        foreach (var serving in _serving)
        {
            serving.Dispose();
        }

        await _buses.DisposeAsync();
        await _services.DisposeAsync();
        if (_watcher is not null)
        {
            await _watcher.DisposeAsync();
        }
    }

    [Fact(Timeout = 90_000)]
    public async Task AShardGivenBack_IsDeliveredByBoth_ForOneLeaseTime_ThenByItsTakerOnly()
    {
        var firstClock = new FakeTimeProvider();
        var secondClock = new FakeTimeProvider();
        var first = _buses.Make(time: firstClock, fanOutLeaseTtl: s_ttl);
        var second = _buses.Make(time: secondClock, fanOutLeaseTtl: s_ttl);
        var publisher = _buses.Make();
        var shards = first.Options.Shards;
        var channels = ChannelPerShard(first);

        // Alone, the first process takes every shard at its first tick.
        var firstHandler = new Recording();
        _serving.Add(first.ServeFanOut(firstHandler));
        await UntilListenersAsync(Enumerable.Repeat(1, shards).ToArray());

        // The second joins (its first tick finds every shard leased); at the first's next tick the first gives half
        // back, and keeps delivering those; at the second's next tick the second takes them.
        var secondHandler = new Recording();
        _serving.Add(second.ServeFanOut(secondHandler));
        await UntilAsync(async () => (await InstancesAsync()) == 2, "the second fan-out process never registered");
        await TickAsync(first, firstClock, s_tick);
        await TickAsync(second, secondClock, s_tick);
        var counts = await UntilSplitAsync(shards);
        var given = Enumerable.Range(0, shards).Where(s => counts[s] == 2).ToHashSet();
        Assert.Equal(shards / 2, given.Count);

        // Meanwhile both deliver the shards given back; the first alone the shards it kept.
        await PublishAsync(publisher, channels, seq: 1);
        await UntilAsync(() => Task.FromResult(channels.All(c => firstHandler.Has(c, 1)) && given.All(s => secondHandler.Has(channels[s], 1))), "a message of a held or kept shard did not arrive");
        Assert.All(Enumerable.Range(0, shards).Where(s => !given.Contains(s)), s => Assert.False(secondHandler.Has(channels[s], 1), $"shard {s} was not given: the second delivered it"));

        // The keeping lasts one lease time from the tick that gave them back: a tick before that keeps them ...
        await TickAsync(first, firstClock, s_tick);
        await Task.Delay(200);
        await PublishAsync(publisher, channels, seq: 2);
        await UntilAsync(() => Task.FromResult(channels.All(c => firstHandler.Has(c, 2))), "the first stopped delivering a kept or given-back shard before its lease time was over");
        Assert.Equal(counts, await ListenersAsync(shards));

        // ... and the first tick past it lets them go: the taker alone listens and delivers.
        await TickAsync(first, firstClock, s_ttl);
        var after = await UntilListenersAsync(Enumerable.Range(0, shards).Select(_ => 1).ToArray());
        await PublishAsync(publisher, channels, seq: 3);
        await UntilAsync(() => Task.FromResult(given.All(s => secondHandler.Has(channels[s], 3)) && channels.Where((_, s) => !given.Contains(s)).All(c => firstHandler.Has(c, 3))), "a message after the keeping did not arrive");
        Assert.All(given, s => Assert.False(firstHandler.Has(channels[s], 3), $"shard {s} was given back a lease time ago: the first still delivered it"));
        Assert.Equal(shards, after.Sum());
    }

    [Fact(Timeout = 90_000)]
    public async Task ARenewalAnsweredAfterItsLeaseRanOut_CountsEveryShardLapsed_AndTellsNodesToResyncThem()
    {
        var meters = _services.GetRequiredService<IMeterFactory>();
        var handler = new Recording();
        var (clock, fanOut, publisher, channels) = await ServeAloneAsync(handler, meters);
        var shards = channels.Length;

        // The answer to the next renewal proves nothing about the time it waited: every shard counts lapsed and is resynced.
        await LateRenewalAsync(clock, shards);
        await UntilAsync(() => Task.FromResult(MeterReading.Read(meters, "relay.redis.fanout_lease_lapses") == shards), () => $"{MeterReading.Read(meters, "relay.redis.fanout_lease_lapses")} of {shards} shards counted lapsed");

        // The late answer renewed the leases only up to the lease time it was sent with, which is past: what arrives now
        // is held (another process may hold those shards by now) until the next renewal says they are still this
        // process's, and then delivered.
        await PublishAsync(publisher, channels, seq: 1);
        await Task.Delay(300);
        Assert.All(channels, c => Assert.False(handler.Has(c, 1), $"{c} was delivered on a lease that had run out"));
        await TickAsync(fanOut, clock, s_tick);
        await UntilAsync(() => Task.FromResult(channels.All(c => handler.Has(c, 1))), "a message held over the lapse was not delivered at the next renewal");
    }

    [Theory(Timeout = 90_000)]
    [InlineData(true)]
    [InlineData(false)]
    public async Task MessagesStillQueuedForAShardThatWasLost_AreNotFannedOut_WhenTheShardIsTakenBack(bool lostAtATick)
    {
        // A paused or starved process's subscription queues hold its shards' messages when the lease runs out; the tick
        // that finds the shards lost drops the subscriptions, but a dropped subscription's queue is still handled. Here a
        // stalled handler keeps two messages queued across the loss and the taking back: lost at a tick, then taken
        // back at the next; or taken back at the first tick after the lapse under a new token (the lease was another
        // process's meanwhile, or nobody's), which drops the subscription too.
        const int Shard = 3;
        var handler = new Recording();
        var (clock, fanOut, publisher, channels) = await ServeAloneAsync(handler);
        var shards = channels.Length;
        handler.Stall = (channels[Shard], 1);

        // Seq 1 stalls the shard's handler (delivered: the lease held when it arrived); 2 and 3 queue behind it.
        foreach (var seq in new long[] { 1, 2, 3 })
        {
            await publisher.PublishSequencedAsync(Message(channels[Shard], seq));
        }

        await UntilAsync(() => Task.FromResult(handler.Has(channels[Shard], 1)), "the first message never reached the handler");

        // The lease runs out here while another process takes the shard: the next tick finds it lost and drops its
        // subscription. Then the other process gives it back and the next tick takes it again.
        var lease = _watcher!.GetDatabase();
        var announcements = new ConcurrentQueue<string>();
        await _watcher.GetSubscriber().SubscribeAsync(RedisKeys.Resync, (_, message) => announcements.Enqueue(message.ToString()));
        long fenced;
        if (lostAtATick)
        {
            Assert.True(await lease.StringSetAsync(RedisKeys.FanOutLease(Shard), "another-process", s_ttl));
            await TickAsync(fanOut, clock, s_ttl);
            await UntilListenersAsync([.. Enumerable.Range(0, shards).Select(static s => s == Shard ? 0 : 1)]);
            Assert.True(await lease.KeyDeleteAsync(RedisKeys.FanOutLease(Shard)));
            fenced = fanOut.FencedDeliveries;
            await TickAsync(fanOut, clock, s_tick);
        }
        else
        {
            Assert.True(await lease.KeyDeleteAsync(RedisKeys.FanOutLease(Shard)));
            fenced = fanOut.FencedDeliveries;
            await TickAsync(fanOut, clock, s_ttl);
        }

        // The take (every shard lapsed here) ends with the resync of its shards, after the subscriptions.
        await UntilAsync(() => Task.FromResult(announcements.Any(a => a.Split(':', ',').Contains(Shard.ToString(System.Globalization.CultureInfo.InvariantCulture)))), () => $"shard {Shard} was not taken back; heard: {string.Join(" ", announcements)}");
        await UntilListenersAsync(Enumerable.Repeat(1, shards).ToArray());

        // The stalled handler goes on: 2 and 3 came through the subscription dropped with the lost lease, so they are
        // fenced, not fanned out again (the process that held the shard meanwhile, or the nodes' resync, covered them).
        handler.Release();
        await UntilAsync(() => Task.FromResult(fanOut.FencedDeliveries - fenced == 2 || handler.Has(channels[Shard], 2) || handler.Has(channels[Shard], 3)), () => $"messages 2 and 3 were neither fenced nor delivered ({fanOut.FencedDeliveries - fenced} fenced)");
        Assert.False(handler.Has(channels[Shard], 2), "message 2, queued before the lease was lost, was fanned out after the shard was taken back");
        Assert.False(handler.Has(channels[Shard], 3), "message 3, queued before the lease was lost, was fanned out after the shard was taken back");

        // The new subscription delivers what comes now.
        await publisher.PublishSequencedAsync(Message(channels[Shard], 4));
        await UntilAsync(() => Task.FromResult(handler.Has(channels[Shard], 4)), "a message after the shard was taken back was not delivered");
        Assert.Equal(2, fanOut.FencedDeliveries - fenced);
    }

    [Fact(Timeout = 90_000)]
    public async Task MessagesHeldOverALapse_AreFenced_WhenTheShardComesBackUnderANewToken()
    {
        // A late renewal leaves every shard lapsed: what arrives is held for the next renewal. That renewal delivers it
        // where the shard's token is unchanged (the lease stayed this process's in Redis), and fences it where the shard
        // was taken anew meanwhile (another process may have held it and fanned the same messages out).
        var handler = new Recording();
        var (clock, fanOut, publisher, channels) = await ServeAloneAsync(handler);
        var shards = channels.Length;
        await LateRenewalAsync(clock, shards);

        // Shard 3's lease goes away in Redis (taken by another process and given back); the next tick takes it anew.
        const int Shard = 3;
        var tokenBefore = await _watcher!.GetDatabase().HashGetAsync(RedisKeys.FanOutFences, Shard);
        Assert.True(await _watcher.GetDatabase().KeyDeleteAsync(RedisKeys.FanOutLease(Shard)));
        await PublishAsync(publisher, channels, seq: 1);
        await Task.Delay(300);
        Assert.All(channels, c => Assert.False(handler.Has(c, 1), $"{c} was delivered on a lease that had run out"));
        var fenced = fanOut.FencedDeliveries;
        await TickAsync(fanOut, clock, s_tick);
        await UntilAsync(() => Task.FromResult(channels.Where((_, s) => s != Shard).All(c => handler.Has(c, 1))), "a message held over the lapse was not delivered at the next renewal");
        await UntilAsync(() => Task.FromResult(fanOut.FencedDeliveries - fenced == 1 || handler.Has(channels[Shard], 1)), "the held message of the shard taken anew was neither fenced nor delivered");
        Assert.NotEqual(tokenBefore, await _watcher.GetDatabase().HashGetAsync(RedisKeys.FanOutFences, Shard));
        Assert.False(handler.Has(channels[Shard], 1), "a message held over the lapse was delivered though the shard had been taken anew meanwhile");
        Assert.Equal(1, fanOut.FencedDeliveries - fenced);
    }

    // A fan-out process alone on a fake clock, serving `handler` from when it holds every shard; a publisher; a channel
    // of each shard.
    private async Task<(FakeTimeProvider Clock, RedisBus FanOut, RedisBus Publisher, string[] Channels)> ServeAloneAsync(Recording handler, IMeterFactory? meters = null)
    {
        var clock = new FakeTimeProvider();
        var fanOut = _buses.Make(time: clock, fanOutLeaseTtl: s_ttl, meters: meters);
        var channels = ChannelPerShard(fanOut);
        _serving.Add(fanOut.ServeFanOut(handler));
        await UntilListenersAsync(Enumerable.Repeat(1, channels.Length).ToArray());
        return (clock, fanOut, _buses.Make(), channels);
    }

    // Redis holds every write for two seconds (scripts included): the next renewal is sent, and while it waits the
    // process's clock passes the lease time the renewal was sent with. Returns once that late answer's tick resynced
    // every shard.
    private async Task LateRenewalAsync(FakeTimeProvider clock, int shards)
    {
        var announcements = new ConcurrentQueue<string>();
        await _watcher!.GetSubscriber().SubscribeAsync(RedisKeys.Resync, (_, message) => announcements.Enqueue(message.ToString()));
        Assert.StartsWith("+OK", await RedisCommand.SendAsync(redis.Server.Port, "CLIENT", "PAUSE", "2000", "WRITE"), StringComparison.Ordinal);
        clock.Advance(s_tick);
        await Task.Delay(200);
        clock.Advance(s_ttl);
        await UntilAsync(() => Task.FromResult(announcements.Any(a => a == "fanout:" + string.Join(',', Enumerable.Range(0, shards)))), () => $"no resync of every shard; heard: {string.Join(" ", announcements)}");
    }

    // A channel of each shard, by the bus's own hash.
    private static string[] ChannelPerShard(RedisBus bus)
    {
        var channels = new string[bus.Options.Shards];
        for (var i = 0; channels.Any(static c => c is null); i++)
        {
            var channel = "clock-" + i;
            channels[bus.ShardOf("test", channel)] ??= channel;
        }

        return channels;
    }

    private static async Task PublishAsync(RedisBus publisher, string[] channels, long seq)
    {
        foreach (var channel in channels)
        {
            await publisher.PublishSequencedAsync(Message(channel, seq));
        }
    }

    private static RelayMessage Message(string channel, long seq) =>
        new() { App = "test", Channel = channel, Seq = seq, Epoch = "e1", Data = "1"u8.ToArray(), Timestamp = 1 };

    // Advances a process's clock and waits until its lease tick ran in Redis (its instance's score, Redis's clock in ms,
    // moved); what the tick does after the answer is local and quick.
    private async Task TickAsync(RedisBus bus, FakeTimeProvider clock, TimeSpan by)
    {
        var before = await _watcher!.GetDatabase().SortedSetScoreAsync(RedisKeys.FanOuts, bus.InstanceId);
        clock.Advance(by);
        await UntilAsync(async () => await _watcher.GetDatabase().SortedSetScoreAsync(RedisKeys.FanOuts, bus.InstanceId) != before, "the lease tick never ran");
    }

    private async Task<long> InstancesAsync() => await _watcher!.GetDatabase().SortedSetLengthAsync(RedisKeys.FanOuts);

    // How many connections listen on each shard's fan-out channel.
    private async Task<int[]> ListenersAsync(int shards)
    {
        var counts = new int[shards];
        var server = _watcher!.GetServer(_watcher.GetEndPoints()[0]);
        for (var shard = 0; shard < shards; shard++)
        {
            var reply = (RedisResult[])(await server.ExecuteAsync("PUBSUB", "NUMSUB", RedisKeys.FanOutShardName(shard)))!;
            counts[shard] = (int)(long)reply[1];
        }

        return counts;
    }

    private async Task<int[]> UntilListenersAsync(int[] expected)
    {
        var counts = await ListenersAsync(expected.Length);
        var deadline = DateTime.UtcNow + s_wait;
        while (!counts.SequenceEqual(expected))
        {
            Assert.True(DateTime.UtcNow < deadline, $"listeners per shard: {string.Join(',', counts)}; expected {string.Join(',', expected)}");
            await Task.Delay(20);
            counts = await ListenersAsync(expected.Length);
        }

        return counts;
    }

    // Half the shards with two listeners (given back, still kept), half with one.
    private async Task<int[]> UntilSplitAsync(int shards)
    {
        var counts = await ListenersAsync(shards);
        var deadline = DateTime.UtcNow + s_wait;
        while (counts.Count(static c => c == 2) != shards / 2 || counts.Any(static c => c is < 1 or > 2))
        {
            Assert.True(DateTime.UtcNow < deadline, $"listeners per shard: {string.Join(',', counts)}");
            await Task.Delay(20);
            counts = await ListenersAsync(shards);
        }

        return counts;
    }

    private static Task UntilAsync(Func<Task<bool>> done, string failure) => UntilAsync(done, () => failure);

    private static async Task UntilAsync(Func<Task<bool>> done, Func<string> failure)
    {
        var deadline = DateTime.UtcNow + s_wait;
        while (!await done())
        {
            Assert.True(DateTime.UtcNow < deadline, failure());
            await Task.Delay(20);
        }
    }

    private sealed class Recording : IFanOutHandler
    {
        private readonly ConcurrentDictionary<(string Channel, long Seq), int> _received = new();

        private readonly ManualResetEventSlim _released = new();

        /// <summary>A message the handler stalls on once it has recorded it (its channel's queue waits), until <see cref="Release"/>; set before it is published.</summary>
        public (string Channel, long Seq)? Stall { get; set; }

        public bool Has(string channel, long seq) => _received.ContainsKey((channel, seq));

        public void Release() => _released.Set();

        public ValueTask OnSequencedAsync(RelayMessage message)
        {
            _received.AddOrUpdate((message.Channel, message.Seq), 1, static (_, n) => n + 1);
            if (Stall == (message.Channel, message.Seq))
            {
                // Bounded: a test that never releases fails on its own wait, not on a stuck thread.
                _released.Wait(s_wait * 3);
            }

            return ValueTask.CompletedTask;
        }

        public ValueTask OnInterestAsync(InterestChange change) => ValueTask.CompletedTask;

        public ValueTask OnNodeGoneAsync(string nodeId) => ValueTask.CompletedTask;

        public ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken) =>
            ValueTask.FromResult<IReadOnlyList<ChannelCount>>([]);
    }
}
