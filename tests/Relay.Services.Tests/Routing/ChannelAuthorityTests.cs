using System.Text;
using Microsoft.Extensions.Time.Testing;
using Relay.Bus.FanOut;
using Relay.Bus.InMemory;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Namespaces;
using Relay.Routing;
using Relay.Routing.Channels;

namespace Relay.Services.Tests.Routing;

/// <summary>
/// The in-memory routing authority on a fake clock: the idempotency window, history's age limit and the idle sweep,
/// each checked on both sides of its boundary without waiting for real time to pass.
/// </summary>
public sealed class ChannelAuthorityTests
{
    private const string App = "app";
    private static readonly TimeSpan HistoryTtl = TimeSpan.FromMinutes(5);

    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2031, 3, 4, 5, 6, 7, TimeSpan.Zero));
    private readonly InMemoryBus _bus = new();
    private readonly FanOutRecorder _fanOut = new();
    private readonly ChannelAuthority _authority;

    public ChannelAuthorityTests()
    {
        var namespaces = new NamespacesOptions { Defaults = { HistoryTtl = HistoryTtl, HistorySize = 100 } };
        _authority = new ChannelAuthority(_bus, _clock, new NamespacePolicies(namespaces));
        _bus.ServeFanOut(_fanOut);
    }

    [Fact]
    public async Task Publish_WithAnIdSeenInsideTheWindow_AnswersTheFirstSeq_AndAfterTheWindowSequencesItAgain()
    {
        var first = await PublishAsync("c", "m-1");
        _clock.Advance(RoutingOptions.IdempotencyWindow - TimeSpan.FromMilliseconds(1));
        var retried = await PublishAsync("c", "m-1");
        Assert.Equal(first.Seqs, retried.Seqs);
        Assert.Single(_fanOut.Messages);

        _clock.Advance(TimeSpan.FromMilliseconds(1));
        var late = await PublishAsync("c", "m-1");
        Assert.Equal(first.Seqs[0] + 1, late.Seqs[0]);
        Assert.Equal([1L, 2L], _fanOut.Messages.Select(m => m.Seq));
    }

    [Fact]
    public async Task Publish_RepeatingAnIdWithinOneBatch_SequencesItOnce()
    {
        var reply = await PublishAsync("c", "m-1", "m-2", "m-1");

        Assert.Equal([1L, 2L, 1L], reply.Seqs);
        Assert.Equal(2, _fanOut.Messages.Count);
    }

    [Fact]
    public async Task History_KeepsAMessageUntilItsTtl_AndLosesEachAsItsOwnTtlPasses()
    {
        await PublishAsync("c", "a");
        _clock.Advance(TimeSpan.FromMinutes(1));
        await PublishAsync("c", "b");

        _clock.Advance(HistoryTtl - TimeSpan.FromMinutes(1));
        Assert.Equal(["a", "b"], await HistoryIdsAsync("c"));

        _clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(["b"], await HistoryIdsAsync("c"));

        _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Empty(await HistoryIdsAsync("c"));
    }

    [Fact]
    public async Task Sweep_KeepsAChannelWhileItHasHistoryOrRecentIds_ThenForgetsIt_AndItsNextPublishStartsANewEpoch()
    {
        var first = await PublishAsync("c", "a");
        Assert.Equal(0, _authority.Sweep());

        // History (5 minutes) outlives the id window (2 minutes): the channel stays until its last message expires,
        // which is once the message is older than the TTL (at exactly the TTL it is still kept).
        _clock.Advance(HistoryTtl);
        Assert.Equal(0, _authority.Sweep());
        Assert.Equal(1, _authority.ChannelCount);

        _clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, _authority.Sweep());
        Assert.Equal(0, _authority.ChannelCount);

        var again = await PublishAsync("c", "a");
        Assert.Equal(1, again.Seqs[0]);
        Assert.NotEqual(first.Epoch, again.Epoch);
    }

    [Fact]
    public async Task Sweep_KeepsAChannelWithAPresentMember_HoweverLongItIsIdle()
    {
        var enter = new PresenceRequest(App, "room", "enter", "alice", "conn-1", Encoding.UTF8.GetBytes("{}"));
        Assert.IsType<PresenceReply>(await _authority.HandleAsync(enter, CancellationToken.None));

        _clock.Advance(TimeSpan.FromDays(1));
        Assert.Equal(0, _authority.Sweep());
        var members = Assert.IsType<PresenceReply>(await _authority.HandleAsync(new PresenceGetRequest(App, "room"), CancellationToken.None));
        Assert.Equal("alice", Assert.Single(members.Members).ClientId);
    }

    private async Task<PublishReply> PublishAsync(string channel, params string[] ids)
    {
        var items = ids.Select(id => new PublishItem(null, Encoding.UTF8.GetBytes($"\"{id}\""), true, id)).ToArray();
        var reply = await _authority.HandleAsync(new PublishRequest(App, channel, items, null, null), CancellationToken.None);
        return Assert.IsType<PublishReply>(reply);
    }

    private async Task<string[]> HistoryIdsAsync(string channel)
    {
        var reply = await _authority.HandleAsync(new HistoryRequest(App, channel, 100), CancellationToken.None);
        return [.. Assert.IsType<HistoryReply>(reply).Messages.Select(m => m.Id ?? "(none)")];
    }

    /// <summary>Records what the authority hands to fan-out.</summary>
    private sealed class FanOutRecorder : IFanOutHandler
    {
        public List<RelayMessage> Messages { get; } = [];

        public ValueTask OnSequencedAsync(RelayMessage message)
        {
            lock (Messages)
            {
                Messages.Add(message);
            }

            return ValueTask.CompletedTask;
        }

        public ValueTask OnInterestAsync(InterestChange change) => ValueTask.CompletedTask;

        public ValueTask OnNodeGoneAsync(string nodeId) => ValueTask.CompletedTask;

        public ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken) =>
            ValueTask.FromResult<IReadOnlyList<ChannelCount>>([]);
    }
}
