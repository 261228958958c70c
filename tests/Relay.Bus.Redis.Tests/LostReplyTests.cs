using System.Diagnostics;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Testing;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// A routing answer published while the caller's reply subscription is away (Redis restarted, the connection dropped)
/// reaches nobody: pub/sub is at most once. The caller must not wait out <c>RequestTimeout</c> for it: a request that is
/// safe to repeat is sent again, any other is answered 50300 within a few seconds. Two buses stand for two processes.
/// The caller connects as a Redis user of its own; while the serving side holds 30 requests, the user loses the right to
/// its reply channel (Redis closes its subscription connection, and the client's SUBSCRIBE after reconnecting is refused),
/// the serving side answers into that gap, and then the right comes back and the connection is closed once more, so the
/// client reconnects and subscribes as after a Redis restart.
/// </summary>
public sealed class LostReplyTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(20);

    // Well under RequestTimeout: the reconnect, a repeat, or the 2 s grace for an answer that cannot be repeated.
    private static readonly TimeSpan AnsweredWithin = TimeSpan.FromSeconds(8);

    private const string Password = "caller-password-0123";

    private readonly string _callerName = "caller-" + Guid.NewGuid().ToString("N")[..8];
    private readonly TestBuses _buses = new(redis.Server, RequestTimeout);

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _buses.DisposeAsync().AsTask();

    [Fact(Timeout = 60_000)]
    public async Task AnswersPublishedWhileTheCallerResubscribes_AreNotWaitedFor_RepeatableOnesSentAgain()
    {
        var serving = _buses.Make();
        var caller = await MakeCallerAsync();
        var routing = new HeldRouting();
        using var served = serving.ServeRouting(routing);
        using var probing = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (await caller.SendToRoutingAsync(new PositionRequest("test", "probe"), probing.Token) is not PositionReply)
        {
            await Task.Delay(100, probing.Token);
        }

        // 30 requests in flight, held by the routing side: 10 reads, 10 publishes with ids, 10 without.
        routing.Hold();
        var started = Stopwatch.StartNew();
        var reads = Enumerable.Range(0, 10).Select(i => Timed(caller, new PositionRequest("test", $"read-{i}"))).ToList();
        var withIds = Enumerable.Range(0, 10).Select(i => Timed(caller, Publish($"with-id-{i}", id: $"id-{i}"))).ToList();
        var withoutIds = Enumerable.Range(0, 10).Select(i => Timed(caller, Publish($"without-id-{i}", id: null))).ToList();
        await routing.WaitUntilHeldAsync(30, TimeSpan.FromSeconds(10));

        // The caller's reply subscription goes, and cannot come back while the held answers go out to nobody.
        var replyChannel = RedisKeys.ReplyName(caller.InstanceId);
        await AclAsync("ACL", "SETUSER", _callerName, "resetchannels", $"&{RedisKeys.ChannelNamePrefix}shard:*");
        await WaitUntilNobodyListensAsync(replyChannel, TimeSpan.FromSeconds(5));
        routing.Release();
        await routing.WaitUntilAnsweredAsync(30, TimeSpan.FromSeconds(10));
        await Task.Delay(300);

        // The subscription comes back, as it does once Redis has restarted.
        await AclAsync("ACL", "SETUSER", _callerName, "allchannels");
        Assert.StartsWith(":", await RedisCommand.SendAsync(redis.Server.Port, "CLIENT", "KILL", "USER", _callerName), StringComparison.Ordinal);

        foreach (var (reply, took) in await Task.WhenAll(reads.Concat(withIds)))
        {
            Assert.True(took < AnsweredWithin, $"answered after {took.TotalSeconds:0.0} s: {reply}");
            Assert.True(reply is PositionReply or PublishReply, $"a repeatable request was answered {reply}");
        }

        foreach (var (reply, took) in await Task.WhenAll(withoutIds))
        {
            Assert.True(took < AnsweredWithin, $"answered after {took.TotalSeconds:0.0} s: {reply}");
            Assert.True(reply is ErrorReply { Error.Code: ErrorCodes.Unavailable } or PublishReply, $"a publish without an id was answered {reply}");
        }

        // Nothing was held up: the whole round took a few seconds, not RequestTimeout.
        Assert.True(started.Elapsed < AnsweredWithin, $"30 requests took {started.Elapsed.TotalSeconds:0.0} s");
    }

    private static PublishRequest Publish(string channel, string? id) =>
        new("test", channel, [new PublishItem(Name: null, "1"u8.ToArray(), DataIsJson: true, id)], ClientId: null, TraceParent: null);

    private static async Task<(RoutingReply Reply, TimeSpan Took)> Timed(RedisBus caller, RoutingRequest request)
    {
        var started = Stopwatch.StartNew();
        var reply = await caller.SendToRoutingAsync(request, CancellationToken.None).AsTask().WaitAsync(RequestTimeout + TimeSpan.FromSeconds(5));
        return (reply, started.Elapsed);
    }

    private Task AclAsync(params string[] command) => _buses.AclAsync(command);

    private async Task WaitUntilNobodyListensAsync(string channel, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (!(await RedisCommand.SendAsync(redis.Server.Port, "PUBSUB", "NUMSUB", channel)).TrimEnd().EndsWith(":0", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"{channel} still has a subscriber {within.TotalSeconds} s after its connection was killed");
            await Task.Delay(5);
        }
    }

    // The caller connects as a user of its own (with every right until the test takes one away).
    private Task<RedisBus> MakeCallerAsync() => _buses.MakeAsUserAsync(_callerName, Password);

    // Answers positions and publishes; while held, each request waits for the release (as a routing instance whose Redis
    // calls were slow would) and is counted.
    private sealed class HeldRouting : IRoutingHandler
    {
        private TaskCompletionSource _released = Released();
        private int _held;
        private int _answered;

        public void Hold()
        {
            _released = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _held, 0);
            Volatile.Write(ref _answered, 0);
        }

        public void Release() => _released.TrySetResult();

        public async Task WaitUntilHeldAsync(int count, TimeSpan within)
        {
            var deadline = DateTime.UtcNow + within;
            while (Volatile.Read(ref _held) < count)
            {
                Assert.True(DateTime.UtcNow < deadline, $"{Volatile.Read(ref _held)} of {count} requests reached routing within {within.TotalSeconds} s");
                await Task.Delay(10);
            }
        }

        public async Task WaitUntilAnsweredAsync(int count, TimeSpan within)
        {
            var deadline = DateTime.UtcNow + within;
            while (Volatile.Read(ref _answered) < count)
            {
                Assert.True(DateTime.UtcNow < deadline, $"{Volatile.Read(ref _answered)} of {count} held requests answered within {within.TotalSeconds} s");
                await Task.Delay(10);
            }
        }

        public async ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken)
        {
            var released = _released;
            if (!released.Task.IsCompleted)
            {
                Interlocked.Increment(ref _held);
                await released.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
                Interlocked.Increment(ref _answered);
            }

            return request switch
            {
                PositionRequest => new PositionReply(new ChannelPosition("e1", 1)),
                PublishRequest => new PublishReply([1], "e1"),
                _ => new ErrorReply(new RelayError(ErrorCodes.Internal, "unexpected request")),
            };
        }

        private static TaskCompletionSource Released()
        {
            var released = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            released.SetResult();
            return released;
        }
    }
}
