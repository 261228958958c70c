using System.Text;
using Relay.Core.Messages;
using Relay.Testing;

namespace Relay.Bus.Redis.Tests;

/// <summary><see cref="RedisPresence"/>'s numbered, kept presence events against a real redis-server.</summary>
public class RedisPresenceTests(RedisServerFixture fixture) : IClassFixture<RedisServerFixture>
{
    private static RelayMessage Member(string channel, string clientId) => new()
    {
        App = "app",
        Channel = channel,
        Epoch = "",
        ClientId = clientId,
        ConnectionId = "conn-" + clientId,
        Data = Encoding.UTF8.GetBytes($"{{\"name\":\"{clientId}\"}}"),
    };

    [Fact(Timeout = 30_000)]
    public async Task Changes_AreNumberedInOrder_KeptAsPublished_AndReadBackAfterANumber()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var presence = new RedisPresence(connection.GetDatabase());
        var log = new RedisChannelLog(connection.GetDatabase());
        var channel = $"room-{Guid.NewGuid():N}";
        await presence.ChangeAsync("enter", "node-1", Member(channel, "alice"), "nowhere");
        await presence.ChangeAsync("enter", "node-1", Member(channel, "bob"), "nowhere");
        await presence.ChangeAsync("update", "node-1", Member(channel, "alice"), "nowhere");
        await presence.ChangeAsync("leave", "node-1", Member(channel, "bob"), "nowhere");

        var all = await presence.ReadAfterAsync("app", channel, 0, 100);
        Assert.True(all.Complete);
        Assert.Equal(4, all.PresenceSeq);
        Assert.Equal([1L, 2, 3, 4], all.Events.Select(e => e.Seq));
        Assert.Equal(["enter alice", "enter bob", "update alice", "leave bob"], all.Events.Select(e => $"{e.PresenceAction} {e.ClientId}"));
        Assert.All(all.Events, e => Assert.Equal(all.Epoch, e.Epoch));
        Assert.Equal("{\"name\":\"bob\"}", Encoding.UTF8.GetString(all.Events[3].Data.Span));

        // Messages' seqs and presence numbers are separate sequences of one epoch; a position read reports both.
        var position = await log.PositionAsync("app", channel);
        Assert.Equal((all.Epoch, 0L, 4L), (position.Epoch, position.Seq, position.PresenceSeq));

        var page = await presence.ReadAfterAsync("app", channel, 1, 2);
        Assert.True(page.Complete);
        Assert.Equal([2L, 3], page.Events.Select(e => e.Seq));
        var none = await presence.ReadAfterAsync("app", channel, 4, 10);
        Assert.True(none.Complete);
        Assert.Empty(none.Events);
    }

    [Fact(Timeout = 60_000)]
    public async Task OnlyTheLastKeptEvents_AreReadBack_AndAnOlderStartIsIncomplete()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var presence = new RedisPresence(connection.GetDatabase());
        var channel = $"room-{Guid.NewGuid():N}";
        var changes = RedisPresence.KeptEvents + 5;
        for (var i = 0; i < changes; i++)
        {
            await presence.ChangeAsync("enter", "node-1", Member(channel, $"c{i}"), "nowhere");
        }

        var read = await presence.ReadAfterAsync("app", channel, 0, 10_000);
        Assert.False(read.Complete);
        Assert.Equal(RedisPresence.KeptEvents, read.Events.Count);
        Assert.Equal(6, read.Events[0].Seq);
        var kept = await presence.ReadAfterAsync("app", channel, 5, 10);
        Assert.True(kept.Complete);
        Assert.Equal(6, kept.Events[0].Seq);
    }

    [Fact(Timeout = 30_000)]
    public async Task ANewEpoch_NumbersFromOne_AndNeverReturnsTheOldEpochsEvents()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var database = connection.GetDatabase();
        var presence = new RedisPresence(database);
        var channel = $"room-{Guid.NewGuid():N}";
        await presence.ChangeAsync("enter", "node-1", Member(channel, "alice"), "nowhere");
        await presence.ChangeAsync("enter", "node-1", Member(channel, "bob"), "nowhere");
        var first = await presence.ReadAfterAsync("app", channel, 0, 10);

        // The position is lost (expired, evicted) and the next publish starts a new epoch: the kept events of the old
        // one are still in the list, numbered 1 and 2 like the new epoch's first ones will be.
        var prefix = RedisChannelLog.KeyPrefix("app", channel);
        await database.KeyDeleteAsync(RedisKeys.Position(prefix));
        var gone = await presence.ReadAfterAsync("app", channel, 0, 10);
        Assert.Equal(("", 0L), (gone.Epoch, gone.PresenceSeq));
        await new RedisChannelLog(database).AppendAsync("app", channel, id: null, "{}"u8.ToArray(), 10, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2));
        Assert.Equal(2, await database.ListLengthAsync(RedisKeys.PresenceLog(prefix)));
        await presence.ChangeAsync("enter", "node-1", Member(channel, "carol"), "nowhere");

        var second = await presence.ReadAfterAsync("app", channel, 0, 10);
        Assert.NotEqual(first.Epoch, second.Epoch);
        var only = Assert.Single(second.Events);
        Assert.Equal((1L, "carol", second.Epoch), (only.Seq, only.ClientId, only.Epoch));
    }
}
