using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Redis;
using Relay.Core.Messages;
using Relay.Testing;
using StackExchange.Redis;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// Presence events travel the same at-most-once pub/sub as messages: one can be applied in Redis and still never reach a
/// node (a fan-out lease that lapsed under load, a shard changing hands). Redis numbers each channel's presence events and
/// keeps the recent ones, so the node reads a missed one back, in order, when the next event shows the gap or when fan-out
/// asks nodes to resync, and drops one it already passed. A lost hop is simulated by applying a change whose event goes to
/// a channel nobody listens on: numbered and kept, never delivered.
/// </summary>
public sealed class PresenceGapRepairTests(RedisBusServerWithoutQuietCheckFixture fixture) : IClassFixture<RedisBusServerWithoutQuietCheckFixture>, IAsyncLifetime
{
    // Members' connections, open until the test ends (closing one leaves).
    private readonly List<TestSocket> _members = [];

    private RelayServer Server => fixture.Server;

    private RedisBus Bus => Server.Services.GetRequiredService<RedisBus>();

    [Fact]
    public async Task AnEventLostOnTheWayToTheNode_IsReadBack_BeforeTheNextOne()
    {
        await using var watcher = await WatchAsync("gap-next");
        await EnterAsync("gap-next", "alice");
        Assert.Equal(("enter", "alice"), await NextEventAsync(watcher));

        await EnterUndeliveredAsync("gap-next", "bob");
        await EnterAsync("gap-next", "carol");

        Assert.Equal(("enter", "bob"), await NextEventAsync(watcher));
        Assert.Equal(("enter", "carol"), await NextEventAsync(watcher));
    }

    [Fact]
    public async Task AnEventLostWithNoneAfterIt_IsReadBack_WhenNodesResync()
    {
        await using var watcher = await WatchAsync("gap-quiet");
        await EnterAsync("gap-quiet", "alice");
        Assert.Equal(("enter", "alice"), await NextEventAsync(watcher));

        await EnterUndeliveredAsync("gap-quiet", "bob");

        // What fan-out announces after its lease on a shard lapsed (or a new process took the shard): nodes check every
        // channel they follow against Redis.
        await Bus.Database.PublishAsync(RedisKeys.Resync, "all");
        Assert.Equal(("enter", "bob"), await NextEventAsync(watcher));
    }

    [Fact]
    public async Task AnEventDeliveredTwice_ReachesSubscribersOnce()
    {
        await using var watcher = await WatchAsync("twice");
        await EnterAsync("twice", "alice");
        Assert.Equal(("enter", "alice"), await NextEventAsync(watcher));

        // A former shard holder still sending what it had queued: the same event again, as Redis published it.
        var prefix = RedisChannelLog.KeyPrefix(RelayServer.AppId, "twice");
        var kept = (byte[])(await Bus.Database.ListGetByIndexAsync(RedisKeys.PresenceLog(prefix), -1))!;
        await Bus.Database.PublishAsync(RedisChannel.Literal(Bus.FanOutChannelFor(RelayServer.AppId, "twice")), kept);

        await EnterAsync("twice", "bob");
        Assert.Equal(("enter", "bob"), await NextEventAsync(watcher));
    }

    [Fact]
    public async Task ASubscriptionStartedAfterEvents_GetsOnlyLaterOnes_AndRepairsFromThere()
    {
        await EnterAsync("late-watch", "alice");
        await EnterAsync("late-watch", "bob");
        await using var watcher = await WatchAsync("late-watch");

        // The node starts at the channel's presence number (2): a lost third is read back, nothing older is replayed.
        await EnterUndeliveredAsync("late-watch", "carol");
        await EnterAsync("late-watch", "dave");
        Assert.Equal(("enter", "carol"), await NextEventAsync(watcher));
        Assert.Equal(("enter", "dave"), await NextEventAsync(watcher));
    }

    [Fact]
    public async Task EventsNoLongerKept_AreCountedLost_AndLaterOnesStillGoOut()
    {
        await using var watcher = await WatchAsync("gap-trimmed");
        await EnterAsync("gap-trimmed", "alice");
        Assert.Equal(("enter", "alice"), await NextEventAsync(watcher));
        var before = await PrometheusText.ScrapeAsync(Server.BaseAddress, "relay_ingress_gap_messages_unrepaired_total");

        // Redis keeps the last KeptEvents events: with zed's among them, the first eleven of these are gone.
        var ghosts = RedisPresence.KeptEvents + 10;
        for (var i = 0; i < ghosts; i++)
        {
            await EnterUndeliveredAsync("gap-trimmed", $"ghost-{i}");
        }

        await EnterAsync("gap-trimmed", "zed");
        for (var i = 11; i < ghosts; i++)
        {
            Assert.Equal(("enter", $"ghost-{i}"), await NextEventAsync(watcher));
        }

        Assert.Equal(("enter", "zed"), await NextEventAsync(watcher));
        Assert.Equal(before + 11, await PrometheusText.ScrapeAsync(Server.BaseAddress, "relay_ingress_gap_messages_unrepaired_total"));
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var member in _members)
        {
            await member.DisposeAsync();
        }
    }

    private async Task<TestSocket> WatchAsync(string channel)
    {
        var watcher = await TestSocket.ConnectAsync(Server.RealtimeUriWithKey(RelayServer.Key, "watcher"));
        var reply = await watcher.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
        Assert.Equal("ok", reply.GetProperty("type").GetString());
        return watcher;
    }

    // Enters through a realtime connection that stays open until the test ends.
    private async Task EnterAsync(string channel, string clientId)
    {
        var member = await TestSocket.ConnectAsync(Server.RealtimeUriWithKey(RelayServer.Key, clientId));
        _members.Add(member);
        var reply = await member.RequestAsync(new() { ["type"] = "presence", ["channel"] = channel, ["action"] = "enter" });
        Assert.True(reply.GetProperty("type").GetString() == "ok", reply.GetRawText());
    }

    // Applies an enter whose event is published where no fan-out listens: Redis numbers and keeps it, no node gets it.
    private Task EnterUndeliveredAsync(string channel, string clientId) =>
        Bus.Presence.ChangeAsync(
            "enter",
            "test-node",
            new RelayMessage { App = RelayServer.AppId, Channel = channel, Epoch = "", ClientId = clientId, ConnectionId = "conn-" + clientId, Data = "{}"u8.ToArray(), DataIsJson = true },
            publishTo: "relay-test:nowhere");

    private static async Task<(string Action, string ClientId)> NextEventAsync(TestSocket watcher)
    {
        var frame = await watcher.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence");
        return (frame.GetProperty("action").GetString()!, frame.GetProperty("clientId").GetString()!);
    }
}
