using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Redis;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Ingress;
using Relay.Testing;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// Redis pub/sub is at most once: a message can be stored (acknowledged) and still never reach a node. The node sees
/// the seq jump, reads the gap back from history and goes on in order. Simulated by appending a message to the channel's
/// history without handing it to fan-out, as a lost hop would leave it. The node's quiet check is off here, so what
/// these tests see comes from the path each one tests (a jump, a resync notice): QuietCheckTests covers the check.
/// </summary>
public sealed class GapRepairTests(RedisBusServerWithoutQuietCheckFixture fixture) : IClassFixture<RedisBusServerWithoutQuietCheckFixture>
{
    [Fact]
    public async Task AMessageLostBetweenRoutingAndTheNode_IsReadBackFromHistory_InOrder()
    {
        var server = fixture.Server;
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "gappy" });
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal(1, (await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "gappy", ["data"] = "one" })).GetProperty("seq").GetInt64());
        Assert.Equal(1, (await subscriber.ReceiveMessageAsync()).GetProperty("seq").GetInt64());
        var repaired = await PrometheusText.ScrapeAsync(server.BaseAddress, "relay_ingress_gap_messages_repaired_total");

        // Seqs 2 and 3 are stored but never published: the hop to fan-out "lost" them.
        var bus = server.Services.GetRequiredService<RedisBus>();
        var log = new RedisChannelLog(bus.Database);
        foreach (var text in new[] { "two", "three" })
        {
            var body = BusCodec.EncodeBody(new RelayMessage { App = RelayServer.AppId, Channel = "gappy", Epoch = "", Data = Encoding.UTF8.GetBytes($"\"{text}\"") });
            await log.AppendAsync(RelayServer.AppId, "gappy", id: null, body, maxHistory: 200, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2));
        }

        Assert.Equal(4, (await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "gappy", ["data"] = "four" })).GetProperty("seq").GetInt64());
        foreach (var (seq, text) in new[] { (2L, "two"), (3L, "three"), (4L, "four") })
        {
            var message = await subscriber.ReceiveMessageAsync();
            Assert.Equal(seq, message.GetProperty("seq").GetInt64());
            Assert.Equal(text, message.GetProperty("data").GetString());
        }

        // The fixture's node is shared with the other tests here, which repair messages of their own: count this one's.
        Assert.Equal(repaired + 2, await PrometheusText.ScrapeAsync(server.BaseAddress, "relay_ingress_gap_messages_repaired_total"));
    }

    [Fact]
    public async Task AGapHistoryNoLongerHolds_DisconnectsItsSubscribers_BeforeTheJump_AndTheyRecoverFalse()
    {
        var server = fixture.Server;
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "lossy/a" });
        var epoch = subscribed.GetProperty("epoch").GetString();
        await using var watcher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await watcher.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "lossy/+" });
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "lossy/a", ["data"] = "one" });
        Assert.Equal(1, (await subscriber.ReceiveMessageAsync()).GetProperty("seq").GetInt64());
        Assert.Equal(1, (await watcher.ReceiveMessageAsync()).GetProperty("seq").GetInt64());
        var before = await UnrepairedAsync(server);

        // Seqs 2..11 are stored but never handed to fan-out, and history keeps only 3 of them (9, 10, 11): 2..8 are gone.
        var bus = server.Services.GetRequiredService<RedisBus>();
        var log = new RedisChannelLog(bus.Database);
        for (var i = 2; i <= 11; i++)
        {
            var body = BusCodec.EncodeBody(new RelayMessage { App = RelayServer.AppId, Channel = "lossy/a", Epoch = "", Data = Encoding.UTF8.GetBytes($"{i}") });
            await log.AppendAsync(RelayServer.AppId, "lossy/a", id: null, body, maxHistory: 3, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2));
        }

        Assert.Equal(12, (await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "lossy/a", ["data"] = 12 })).GetProperty("seq").GetInt64());

        // Both are told (disconnect 50300, reconnect: true) and never see a message past the jump on this connection.
        foreach (var socket in new[] { subscriber, watcher })
        {
            var frames = await socket.DrainUntilClosedAsync();
            Assert.DoesNotContain(frames, f => f.GetProperty("type").GetString() == "message");
            var disconnect = Assert.Single(frames, f => f.GetProperty("type").GetString() == "disconnect");
            Assert.Equal(ErrorCodes.Unavailable, disconnect.GetProperty("code").GetInt32());
            Assert.True(disconnect.GetProperty("reconnect").GetBoolean());
        }

        // Resuming the protocol's way tells the client what it lost; live messages follow from the new position.
        await using var resumed = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var reply = await resumed.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "lossy/a", ["since"] = new { epoch, seq = 1 } });
        Assert.False(reply.GetProperty("recovered").GetBoolean(), reply.GetRawText());
        Assert.Equal(12, reply.GetProperty("seq").GetInt64());
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "lossy/a", ["data"] = 13 });
        Assert.Equal(13, (await resumed.ReceiveMessageAsync()).GetProperty("seq").GetInt64());
        Assert.Equal(before + 7, await UnrepairedAsync(server));
    }

    [Fact]
    public async Task AGapBeforeASubscriptionStarted_LeavesThatSubscriptionAlone()
    {
        var server = fixture.Server;
        await using var early = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await early.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "late-join" });
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "late-join", ["data"] = 1 });
        Assert.Equal(1, (await early.ReceiveMessageAsync()).GetProperty("seq").GetInt64());

        // 2..6 stored without fan-out (history keeps 5 and 6); a subscriber that joins now starts at 6 and lost nothing.
        var bus = server.Services.GetRequiredService<RedisBus>();
        var log = new RedisChannelLog(bus.Database);
        for (var i = 2; i <= 6; i++)
        {
            var body = BusCodec.EncodeBody(new RelayMessage { App = RelayServer.AppId, Channel = "late-join", Epoch = "", Data = Encoding.UTF8.GetBytes($"{i}") });
            await log.AppendAsync(RelayServer.AppId, "late-join", id: null, body, maxHistory: 2, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2));
        }

        await using var late = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal(6, (await late.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "late-join" })).GetProperty("seq").GetInt64());
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "late-join", ["data"] = 7 });

        Assert.Equal(7, (await late.ReceiveMessageAsync()).GetProperty("seq").GetInt64());
        var frames = await early.DrainUntilClosedAsync();
        Assert.Equal(ErrorCodes.Unavailable, Assert.Single(frames, f => f.GetProperty("type").GetString() == "disconnect").GetProperty("code").GetInt32());
    }

    private static Task<long> UnrepairedAsync(RelayServer server) =>
        PrometheusText.ScrapeAsync(server.BaseAddress, "relay_ingress_gap_messages_unrepaired_total");

    [Fact]
    public async Task AfterAResync_ALostLastMessage_IsReadBack_EvenWithNoLaterMessage()
    {
        var server = fixture.Server;
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "quiet" });
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "quiet", ["data"] = "one" });
        Assert.Equal(1, (await subscriber.ReceiveMessageAsync()).GetProperty("seq").GetInt64());

        // Seq 2 is stored but its hop is lost, and nothing follows it; fan-out's resync notice (sent after it
        // subscribes again) makes the node check the channel's position.
        var bus = server.Services.GetRequiredService<RedisBus>();
        var body = BusCodec.EncodeBody(new RelayMessage { App = RelayServer.AppId, Channel = "quiet", Epoch = "", Data = Encoding.UTF8.GetBytes("\"two\"") });
        await new RedisChannelLog(bus.Database).AppendAsync(RelayServer.AppId, "quiet", id: null, body, maxHistory: 200, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2));
        await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromMilliseconds(500)));
        await bus.Database.PublishAsync(RedisKeys.Resync, "test");

        var message = await subscriber.ReceiveMessageAsync();
        Assert.Equal(2, message.GetProperty("seq").GetInt64());
        Assert.Equal("two", message.GetProperty("data").GetString());
    }

    [Fact]
    public async Task MessagesDeliveredTwice_AsByTwoFanOutHoldersOfAShard_ReachTheSubscriberOnce()
    {
        var server = fixture.Server;
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "twice" });
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "twice", ["data"] = 1 });
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "twice", ["data"] = 2 });
        var epoch = (await subscriber.ReceiveMessageAsync()).GetProperty("epoch").GetString()!;
        Assert.Equal(2, (await subscriber.ReceiveMessageAsync()).GetProperty("seq").GetInt64());

        // A former holder of the channel's fan-out shard sends 1 and 2 again (queued before it lost its lease).
        var bus = server.Services.GetRequiredService<RedisBus>();
        var node = server.Services.GetRequiredService<IngressNode>();
        var batch = new System.Buffers.ArrayBufferWriter<byte>();
        for (var seq = 1; seq <= 2; seq++)
        {
            BusCodec.AppendToBatch(batch, BusCodec.EncodeSequenced(new RelayMessage { App = RelayServer.AppId, Channel = "twice", Epoch = epoch, Seq = seq, Data = Encoding.UTF8.GetBytes($"{seq}") }));
        }

        await bus.Database.PublishAsync(RedisKeys.Node(node.NodeId), batch.WrittenMemory.ToArray());
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "twice", ["data"] = 3 });
        Assert.Equal(3, (await subscriber.ReceiveMessageAsync()).GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task AResyncForOtherFanOutShards_LeavesAChannelAlone_AndOneForItsShard_ReadsItsLostMessageBack()
    {
        var server = fixture.Server;
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "sharded-quiet" });
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "sharded-quiet", ["data"] = "one" });
        Assert.Equal(1, (await subscriber.ReceiveMessageAsync()).GetProperty("seq").GetInt64());

        // Seq 2 is stored but its hop is lost. A fan-out process that took other shards asks for those only.
        var bus = server.Services.GetRequiredService<RedisBus>();
        var body = BusCodec.EncodeBody(new RelayMessage { App = RelayServer.AppId, Channel = "sharded-quiet", Epoch = "", Data = Encoding.UTF8.GetBytes("\"two\"") });
        await new RedisChannelLog(bus.Database).AppendAsync(RelayServer.AppId, "sharded-quiet", id: null, body, maxHistory: 200, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2));
        var shard = bus.ShardOf(RelayServer.AppId, "sharded-quiet");
        var others = string.Join(',', Enumerable.Range(0, bus.Options.Shards).Where(s => s != shard));
        await bus.Database.PublishAsync(RedisKeys.Resync, "fanout:" + others);
        await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromMilliseconds(1000)));

        await bus.Database.PublishAsync(RedisKeys.Resync, $"fanout:{shard}");
        var message = await subscriber.ReceiveMessageAsync();
        Assert.Equal(2, message.GetProperty("seq").GetInt64());
        Assert.Equal("two", message.GetProperty("data").GetString());
    }

    [Fact]
    public async Task AfterHistoryWasLost_TheNewEpochsFirstMessages_AreReadBackToo()
    {
        var server = fixture.Server;
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "reborn" });
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "reborn", ["data"] = "old" });
        Assert.Equal(1, (await subscriber.ReceiveMessageAsync()).GetProperty("seq").GetInt64());

        // The channel's state is lost (as after a Redis restart without data); the new epoch's seq 1 is stored but its
        // hop is lost; seq 2 arrives and shows the node a new epoch that does not start at 1.
        var bus = server.Services.GetRequiredService<RedisBus>();
        var prefix = RedisChannelLog.KeyPrefix(RelayServer.AppId, "reborn");
        await bus.Database.KeyDeleteAsync([RedisKeys.Position(prefix), RedisKeys.Log(prefix)]);
        var body = BusCodec.EncodeBody(new RelayMessage { App = RelayServer.AppId, Channel = "reborn", Epoch = "", Data = Encoding.UTF8.GetBytes("\"new-1\"") });
        await new RedisChannelLog(bus.Database).AppendAsync(RelayServer.AppId, "reborn", id: null, body, maxHistory: 200, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "reborn", ["data"] = "new-2" });

        var one = await subscriber.ReceiveMessageAsync();
        var two = await subscriber.ReceiveMessageAsync();
        Assert.Equal((1L, "new-1"), (one.GetProperty("seq").GetInt64(), one.GetProperty("data").GetString()));
        Assert.Equal((2L, "new-2"), (two.GetProperty("seq").GetInt64(), two.GetProperty("data").GetString()));
        Assert.NotEqual(subscribed.GetProperty("epoch").GetString(), one.GetProperty("epoch").GetString());
        Assert.Equal(one.GetProperty("epoch").GetString(), two.GetProperty("epoch").GetString());
    }
}
