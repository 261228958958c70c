using Relay.Bus.Routing;
using Relay.Core.Namespaces;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// A routing instance that loses a shard unsubscribes from its channel, but the requests already in the channel's queue
/// are still handed to it. Such a request arrives with no fence: it must go through the claim and the order admission
/// like any other, never straight to the handler, which reads the fence when it runs and can find one a moment later
/// (a claim, or the instance's next lease tick, taking the shard back: a thread paused between the two on a loaded
/// machine). Handled there, a later publish of a caller was stored before an earlier one, and the earlier one, sent
/// again, was refused by the store as "handled before" and answered by nobody until its caller timed out (the
/// HandoverOrderTests CI flake: 13 publishes of one shard failed after 20 s).
/// Here the instance's handler holds the shard's queue while the test gives the shard's lease to another name, so the
/// instance loses the shard with the caller's publishes 2 and 3 queued; the handler then waits, as a paused thread would,
/// until the instance holds the shard again before it hands a request that came without a fence on, and the test frees the
/// lease a second after the queue moves on.
/// </summary>
public sealed class DrainedRequestTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private const string App = "test";

    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(15);

    private static readonly NamespacePolicies s_namespaces = new(new NamespacesOptions
    {
        Defaults = new NamespaceOptions { HistorySize = 1_000, HistoryTtl = TimeSpan.FromHours(1) },
    });

    private readonly TestBuses _buses = new(redis.Server, TimeSpan.FromSeconds(20));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _buses.DisposeAsync().AsTask();

    [Fact(Timeout = 90_000)]
    public async Task ARequestDrainedAfterTheShardWasLost_IsAdmittedInOrder_AndEveryPublishIsAnswered()
    {
        var (owner, caller, handler, channel, second, third) = await HoldTwoBehindOneAsync("drained-", pause: TimeSpan.Zero);
        using var routing = handler;

        // Another name takes the shard's lease: the instance lets the shard go at its next tick.
        var lease = RedisKeys.Lease(owner.ShardOf(App, channel));
        Assert.True(await caller.Database.StringSetAsync(lease, "someone-else", TimeSpan.FromSeconds(30)));
        await Eventually.TrueAsync(() => owner.FenceFor(App, channel) is null, s_wait, "the instance kept the shard");

        // The held request goes on (to a claim the other name's lease refuses) and 3 comes out of the queue; then the lease is
        // free again, and the instance takes the shard back at its next tick.
        handler.Release();
        await Task.Delay(1_000);
        Assert.True(await caller.Database.KeyDeleteAsync(lease));

        var replies = await Task.WhenAll(second, third).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.All(replies, reply => Assert.IsType<PublishReply>(reply));
        Assert.Equal([1, 2, 3], await HandoverOrderTests.StoredAsync(new RedisChannelLog(caller.Database), channel));
    }

    // An admitted request's handler is started under the shard's admission lock, so no later request of its caller is
    // admitted (and written) before its writes went out. Here publish 2 is fenced out (the channel was written under a
    // newer token), and so is 3 behind it; both go to a claim, which gives the instance the shard again under a new token
    // and admits 2, then 3, each on its own thread. The thread handling 2 is paused (a second, as a loaded machine pauses
    // one) between its admission and its write: before the lock, 3 was written first, and 2, sent again, was refused by
    // the store as "handled before" and answered by nobody until its caller timed out (the HandoverOrderTests CI flake
    // again, 46 and 62 publishes of one channel failing after 20 s).
    [Fact(Timeout = 90_000)]
    public async Task RequestsAdmittedOnClaimThreads_AreWrittenInTheOrderAdmitted_AndEveryPublishIsAnswered()
    {
        var (owner, caller, handler, channel, second, third) = await HoldTwoBehindOneAsync("claimed-", pause: TimeSpan.FromSeconds(1));
        using var routing = handler;

        // Meanwhile the lease ran out and another owner wrote to the channel under a newer token: 2 and 3 are fenced out.
        var fence = long.Parse(owner.FenceFor(App, channel)!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(await caller.Database.KeyDeleteAsync(RedisKeys.Lease(owner.ShardOf(App, channel))));
        await caller.Database.HashSetAsync(RedisKeys.Position(RedisChannelLog.KeyPrefix(App, channel)), "fence", fence + 1);
        handler.Release();

        var replies = await Task.WhenAll(second, third).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.All(replies, reply => Assert.IsType<PublishReply>(reply));
        Assert.Equal([1, 2, 3], await HandoverOrderTests.StoredAsync(new RedisChannelLog(caller.Database), channel));
        Assert.Equal(1, handler.Paused);
    }

    // An instance serving routing, a caller whose publish 1 was answered, its publish 2 held in the instance's handler (on the
    // shard queue's thread; with a pause, its next handling is paused that long) and 3 queued behind it.
    private async Task<(RedisBus Owner, RedisBus Caller, Holding Handler, string Channel, Task<RoutingReply> Second, Task<RoutingReply> Third)> HoldTwoBehindOneAsync(string prefix, TimeSpan pause)
    {
        var channel = prefix + Guid.NewGuid().ToString("N")[..8];
        var owner = _buses.Make();
        var caller = _buses.Make();
        var handler = new Holding(owner, new RedisChannelAuthority(owner, s_namespaces), channel);
        handler.Serving = owner.ServeRouting(handler);
        await Eventually.TrueAsync(() => owner.FenceFor(App, channel) is not null, s_wait, "the instance never took the shard");
        Assert.IsType<PublishReply>(await caller.SendToRoutingAsync(HandoverOrderTests.Publish(channel, 1), CancellationToken.None).AsTask().WaitAsync(s_wait));

        handler.HoldNext(pause);
        var second = caller.SendToRoutingAsync(HandoverOrderTests.Publish(channel, 2), CancellationToken.None).AsTask();
        await handler.WaitUntilHeldAsync(s_wait);
        var third = caller.SendToRoutingAsync(HandoverOrderTests.Publish(channel, 3), CancellationToken.None).AsTask();
        await Task.Delay(300);
        return (owner, caller, handler, channel, second, third);
    }

    // The authority, behind two waits on the shard queue's thread: the request after HoldNext waits for Release; a request
    // that comes while the instance holds no fence for the channel waits (up to 10 s) until it holds one again. With a
    // pause, the held request's next handling (on a claim's thread) is paused that long before it reaches the authority.
    private sealed class Holding(RedisBus bus, IRoutingHandler inner, string channel) : IRoutingHandler, IDisposable
    {
        private readonly ManualResetEventSlim _released = new(initialState: true);
        private readonly SemaphoreSlim _held = new(0);
        private int _holdNext;
        private string? _pauseData;
        private TimeSpan _pause;
        private int _paused;

        public int Paused => Volatile.Read(ref _paused);

        // The instance's routing, stopped with the handler.
        public IDisposable? Serving { get; set; }

        public void Dispose() => Serving?.Dispose();

        public void HoldNext(TimeSpan pauseItsNextHandling = default)
        {
            _released.Reset();
            _pause = pauseItsNextHandling;
            Volatile.Write(ref _holdNext, 1);
        }

        public void Release() => _released.Set();

        public Task WaitUntilHeldAsync(TimeSpan timeout) => _held.WaitAsync(timeout).ContinueWith(t => Assert.True(t.Result, "no request was held"), TaskScheduler.Default);

        public ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken)
        {
            if (request is PublishRequest publish && publish.Channel == channel)
            {
                var data = System.Text.Encoding.ASCII.GetString(publish.Items[0].Data.Span);
                if (Interlocked.Exchange(ref _holdNext, 0) == 1)
                {
                    Volatile.Write(ref _pauseData, _pause > TimeSpan.Zero ? data : null);
                    _held.Release();
                    _released.Wait(s_wait, cancellationToken);
                }
                else if (data == Volatile.Read(ref _pauseData) && Interlocked.Exchange(ref _pauseData, null) is not null)
                {
                    Interlocked.Increment(ref _paused);
                    Thread.Sleep(_pause);
                }
                else if (bus.FenceFor(App, channel) is null)
                {
                    SpinWait.SpinUntil(() => bus.FenceFor(App, channel) is not null, TimeSpan.FromSeconds(10));
                }
            }

            return inner.HandleAsync(request, cancellationToken);
        }
    }
}
