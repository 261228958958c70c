using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus;
using Relay.Bus.Redis;
using Relay.Core.Messages;
using Relay.Testing;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// A node id can be configured, so a node may start again under the id of one that died moments ago, before fan-out's
/// sweep noticed: the presence members that incarnation left behind leave at once (nobody holds those connections now).
/// </summary>
public sealed class NodeRestartTests(RedisBusServerFixture fixture) : IClassFixture<RedisBusServerFixture>
{
    [Fact]
    public async Task ANodeStartingUnderADeadNodesId_EvictsThePresenceItLeftBehind()
    {
        var server = fixture.Server;
        var bus = server.Services.GetRequiredService<RedisBus>();
        await using var watcher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await watcher.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "haunted" });

        // The dead incarnation's member, as routing recorded it.
        var record = new RelayMessage { App = RelayServer.AppId, Channel = "haunted", Epoch = "", ClientId = "ghost", ConnectionId = "c-1", Data = Encoding.UTF8.GetBytes("{}") };
        Assert.Equal(PresenceChangeResult.Applied, await bus.Presence.ChangeAsync("enter", "node-x", record, bus.FanOutChannelFor(record.App, record.Channel)));
        var entered = await watcher.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence");
        Assert.Equal("enter", entered.GetProperty("action").GetString());

        using (bus.ServeNode("node-x", new QuietNode()))
        {
            var left = await watcher.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence");
            Assert.Equal(("leave", "ghost"), (left.GetProperty("action").GetString(), left.GetProperty("clientId").GetString()));
        }

        Assert.Empty(await bus.Presence.MembersAsync(RelayServer.AppId, "haunted"));
    }

    private sealed class QuietNode : INodeHandler
    {
        public ValueTask OnDeliverAsync(RelayMessage message) => ValueTask.CompletedTask;
    }
}
