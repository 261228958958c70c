using System.Diagnostics;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Testing;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// A routing instance that gets a request for a shard it no longer holds, and whose claim on the shard Redis refuses,
/// declines with the reason instead of answering: the caller reports the reason (50300) only when every instance it
/// reached declined, so the owner's answer, when the owner got the request too, is the one the caller gets. An error
/// answered at once could overtake the owner's success, and a publish without an id retried on it would be stored twice.
/// The former owner here is an instance whose Redis user lost the right to run scripts: its lease ticks fail (so it keeps
/// its subscriptions, as an instance cut off from Redis does) and so does its claim.
/// </summary>
public sealed class DeclinedClaimTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private const string Password = "former-owner-password-0123";

    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(15);

    private readonly string _formerOwnerName = "former-" + Guid.NewGuid().ToString("N")[..8];
    private readonly TestBuses _buses = new(redis.Server, TimeSpan.FromSeconds(20));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _buses.DisposeAsync().AsTask();

    [Fact(Timeout = 60_000)]
    public async Task AFormerOwnerThatCannotClaim_Declines_AndTheOwnersAnswerIsTheOneTheCallerGets()
    {
        var channel = "declined-" + Guid.NewGuid().ToString("N")[..8];
        var former = await _buses.MakeAsUserAsync(_formerOwnerName, Password);
        using var formerServing = former.ServeRouting(new Answering(NotOwnerReply.Instance));
        await Eventually.TrueAsync(() => former.FenceFor("test", channel) is not null, s_wait, "the first instance never held the shard");

        // Cut off from scripts: its lease runs out, its subscriptions stay.
        await _buses.AclAsync("ACL", "SETUSER", _formerOwnerName, "-evalsha", "-eval");
        await Task.Delay(TimeSpan.FromSeconds(3));
        var caller = _buses.Make();

        // Alone, it declines with the reason, and the caller is told at once (not after RequestTimeout).
        var started = Stopwatch.StartNew();
        var alone = await caller.SendToRoutingAsync(Publish(channel), CancellationToken.None).AsTask().WaitAsync(s_wait);
        var error = Assert.IsType<ErrorReply>(alone);
        Assert.Equal(ErrorCodes.Unavailable, error.Error.Code);
        Assert.Contains("refused the claim", error.Error.Message, StringComparison.Ordinal);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"answered after {started.Elapsed.TotalSeconds:0.0} s");

        // A new owner takes the shard; its answers come 300 ms after the former owner's decline.
        var owner = _buses.Make();
        using var ownerServing = owner.ServeRouting(new Answering(new PublishReply([1], "e1"), TimeSpan.FromMilliseconds(300)));
        await Eventually.TrueAsync(() => owner.FenceFor("test", channel) is not null, s_wait, "the second instance never took the shard");
        for (var i = 0; i < 5; i++)
        {
            var reply = await caller.SendToRoutingAsync(Publish(channel), CancellationToken.None).AsTask().WaitAsync(s_wait);
            Assert.True(reply is PublishReply, $"publish {i} was answered {reply}");
        }
    }

    private static PublishRequest Publish(string channel) =>
        new("test", channel, [new PublishItem(Name: null, "1"u8.ToArray(), DataIsJson: true, Id: null)], ClientId: null, TraceParent: null);

    // Answers every request with one reply, after a delay.
    private sealed class Answering(RoutingReply reply, TimeSpan delay = default) : IRoutingHandler
    {
        public async ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken)
        {
            if (delay > TimeSpan.Zero)
            {
                await Task.Delay(delay, cancellationToken);
            }

            return reply;
        }
    }
}
