using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Namespaces;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// A routing owner that stores a caller's publishes and dies before it answers them: the caller hears nothing, sends
/// them again after 2 s, and the next owner finds them stored. The resend must be answered with the seqs the first
/// handling stored, at once, and nothing stored or delivered twice. Before, the store refused the resend of any publish
/// but the sender's last item on the channel as "handled before" and nobody answered it: its publisher waited out the
/// 20 s RequestTimeout and got 50300 for a message that was stored.
/// Here publish 1 (two messages) and publish 2 (one) of a caller on one channel are stored by an owner whose handler then
/// holds on to them (as a process killed between the store and the answer would), and the owner's bus is stopped; a
/// second instance takes the shard over.
/// </summary>
public sealed class LostAnswerResendTests(RedisServerFixture redis, ITestOutputHelper output) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private const string App = "test";

    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(15);

    // Well inside the caller's 20 s RequestTimeout: the 2 s wait for an answer, the shard's lease (2 s) running out, a
    // resend; generous for a loaded machine.
    private static readonly TimeSpan s_answeredWithin = TimeSpan.FromSeconds(15);

    private static readonly NamespacePolicies s_namespaces = new(new NamespacesOptions
    {
        Defaults = new NamespaceOptions { HistorySize = 1_000, HistoryTtl = TimeSpan.FromHours(1) },
    });

    private readonly TestBuses _buses = new(redis.Server, TimeSpan.FromSeconds(20));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _buses.DisposeAsync().AsTask();

    [Fact(Timeout = 90_000)]
    public async Task PublishesStoredByAnOwnerThatDiedBeforeAnswering_AreAnsweredWithTheirSeqsOnce()
    {
        var channel = "lost-answer-" + Guid.NewGuid().ToString("N")[..8];
        var caller = _buses.Make();
        var owner = _buses.Make();
        var dying = new Dying(new RedisChannelAuthority(owner, s_namespaces), channel);
        var serving = owner.ServeRouting(dying);
        await Eventually.TrueAsync(() => owner.FenceFor(App, channel) is not null, s_wait, "the first instance never took the shard");
        Assert.IsType<PositionReply>(await caller.SendToRoutingAsync(new PositionRequest(App, channel), CancellationToken.None).AsTask().WaitAsync(s_wait));

        // What the shard's fan-out channel carries for this channel (each message as many times as it was delivered).
        var delivered = new ConcurrentQueue<string>();
        var subscriber = caller.Database.Multiplexer.GetSubscriber();
        var fanOut = RedisChannel.Literal(caller.FanOutChannelFor(App, channel));
        await subscriber.SubscribeAsync(fanOut, (_, message) =>
        {
            var text = (string?)message ?? "";
            if (text.Contains(channel, StringComparison.Ordinal))
            {
                delivered.Enqueue(text);
            }
        });

        try
        {
            var started = Stopwatch.StartNew();
            var first = caller.SendToRoutingAsync(Publish(channel, "a", "b"), CancellationToken.None).AsTask();
            var second = caller.SendToRoutingAsync(Publish(channel, "c"), CancellationToken.None).AsTask();
            await dying.WaitUntilStoredAsync(2, s_wait);

            // The owner dies with both answers unsent; another instance takes the shard once its lease is free.
            serving.Dispose();
            await owner.DisposeAsync();
            var next = _buses.Make();
            using var nextServing = next.ServeRouting(new RedisChannelAuthority(next, s_namespaces));

            var replies = await Task.WhenAll(first, second).WaitAsync(s_answeredWithin + TimeSpan.FromSeconds(10));
            var took = started.Elapsed;
            Assert.True(replies[0] is PublishReply, $"publish 1 was answered {replies[0]}");
            Assert.True(replies[1] is PublishReply, $"publish 2 was answered {replies[1]}");
            var (one, two) = ((PublishReply)replies[0], (PublishReply)replies[1]);
            output.WriteLine($"both publishes answered {took.TotalSeconds:0.0} s after they were sent: seqs {string.Join(",", one.Seqs)} and {string.Join(",", two.Seqs)}");
            Assert.True(took < s_answeredWithin, $"answered after {took.TotalSeconds:0.0} s");

            // The seqs the first owner stored, and each message stored once.
            var read = await new RedisChannelLog(caller.Database).ReadAfterAsync(App, channel, 0, 100);
            Assert.Equal([1L, 2L, 3L], read.Messages.Select(m => m.Seq));
            Assert.Equal(["a", "b", "c"], read.Messages.Select(m => Data(m, read.Epoch)));
            Assert.Equal([1L, 2L], one.Seqs);
            Assert.Equal([3L], two.Seqs);
            Assert.Equal(read.Epoch, one.Epoch);
            Assert.Equal(read.Epoch, two.Epoch);

            // Delivered once each: the first owner's store published them, nothing since.
            await Task.Delay(500);
            Assert.Equal(3, delivered.Count);
        }
        finally
        {
            dying.Release();
            await subscriber.UnsubscribeAsync(fanOut);
        }
    }

    private static string Data(ChannelLogMessage message, string epoch) =>
        Encoding.UTF8.GetString(BusCodec.DecodeBody(message.Payload, message.Seq, message.Timestamp, epoch, presenceAction: null).Data.Span).Trim('"');

    private static PublishRequest Publish(string channel, params string[] data) =>
        new(App, channel, [.. data.Select(d => new PublishItem(Name: null, Encoding.UTF8.GetBytes($"\"{d}\""), DataIsJson: true, Id: null))], ClientId: null, TraceParent: null);

    // The authority, whose answers for the test channel's publishes never come back: each is stored, counted, and held until
    // the test ends (its process was killed before it answered).
    private sealed class Dying(IRoutingHandler inner, string channel) : IRoutingHandler
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _stored;

        public void Release() => _released.TrySetResult();

        public async Task WaitUntilStoredAsync(int count, TimeSpan within)
        {
            await Eventually.TrueAsync(() => Volatile.Read(ref _stored) >= count, within, $"{Volatile.Read(ref _stored)} of {count} publishes were stored");
        }

        public ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken) =>
            request is PublishRequest publish && publish.Channel == channel ? HoldAsync(request, cancellationToken) : inner.HandleAsync(request, cancellationToken);

        private async ValueTask<RoutingReply> HoldAsync(RoutingRequest request, CancellationToken cancellationToken)
        {
            await inner.HandleAsync(request, cancellationToken);
            Interlocked.Increment(ref _stored);
            await _released.Task;

            // Nothing goes out for it: the process is gone.
            return HandledBeforeReply.Instance;
        }
    }
}
