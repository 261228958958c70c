using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using Relay.Grpc.V1;
using Relay.Testing;

namespace Relay.Services.Tests.Grpc;

/// <summary>
/// The gRPC API on a real node, over real sockets, with the .NET client generated from protos/relay/v1: the same
/// operations, guarantees and error codes as the WebSocket protocol, and gRPC and WebSocket clients reaching each other
/// on the same channels with the same seqs.
/// </summary>
public abstract class GrpcSpec(IServerFixture fixture) : IDisposable
{
    private readonly RelayServer _server = fixture.Server;
    private readonly GrpcChannel _channel = GrpcClients.Channel(fixture.Server);

    private Relay.Grpc.V1.Realtime.RealtimeClient Client => GrpcClients.Client(_channel);

    private static string Channel(string prefix) => $"grpc-{prefix}:{Guid.NewGuid():N}";

    public void Dispose()
    {
        _channel.Dispose();
        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task Connect_WithKeyAndClientId_FirstFrameSaysConnected()
    {
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key, "alice"));
        Assert.StartsWith("g-", stream.Connected.ConnectionId, StringComparison.Ordinal);
        Assert.Equal("alice", stream.Connected.ClientId);
        Assert.Equal(4096, stream.Connected.MaxMessageBytes);
        var pong = await stream.RequestAsync(new ClientFrame { Ping = new PingRequest() });
        Assert.Equal(ServerFrame.FrameOneofCase.Pong, pong.FrameCase);
    }

    [Fact]
    public async Task Publish_FromGrpc_ReachesWebSocketSubscriberWithItsSeqAndIsInHistory()
    {
        var channel = Channel("to-ws");
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        var subscribed = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
        Assert.Equal("ok", subscribed.GetProperty("type").GetString());
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key, "grpc-pub"));

        var ack = await stream.RequestAsync(new ClientFrame { Publish = GrpcClients.Publish(channel, "{\"text\": \"hi\"}", name: "chat") });
        Assert.Equal(ServerFrame.FrameOneofCase.Published, ack.FrameCase);
        Assert.Equal(1, ack.Published.Seqs.Single());

        var message = await socket.ReceiveMessageAsync();
        Assert.Equal(1, message.GetProperty("seq").GetInt64());
        Assert.Equal("chat", message.GetProperty("name").GetString());
        Assert.Equal("grpc-pub", message.GetProperty("clientId").GetString());
        Assert.Equal("hi", message.GetProperty("data").GetProperty("text").GetString());

        // Acknowledged means stored: history has it straight after the ack.
        var history = await Client.HistoryAsync(new HistoryRequest { Channel = channel }, GrpcClients.Options(GrpcClients.Key(RelayServer.Key)));
        Assert.Equal(1, history.Messages.Single().Seq);
        Assert.Equal("{\"text\":\"hi\"}", history.Messages.Single().Data.Json);
    }

    [Fact]
    public async Task Publish_FromWebSocket_ReachesGrpcSubscriberWithItsSeq()
    {
        var channel = Channel("from-ws");
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        var subscribed = await stream.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });
        Assert.Equal(ServerFrame.FrameOneofCase.Subscribed, subscribed.FrameCase);
        Assert.Equal(0, subscribed.Subscribed.Seq);

        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "ws-pub"));
        for (var i = 1; i <= 3; i++)
        {
            var ok = await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["data"] = new { n = i }, ["id"] = $"m{i}" });
            Assert.Equal(i, ok.GetProperty("seq").GetInt64());
        }

        for (var i = 1; i <= 3; i++)
        {
            var message = (await stream.ReceiveMessageAsync()).Message;
            Assert.Equal(i, message.Seq);
            Assert.Equal($"m{i}", message.Id);
            Assert.Equal("ws-pub", message.ClientId);
            Assert.Equal(i, JsonDocument.Parse(message.Data.Json).RootElement.GetProperty("n").GetInt32());
            Assert.Equal(subscribed.Subscribed.Epoch, message.Epoch);
        }
    }

    [Fact]
    public async Task Publish_SameIdTwice_AcknowledgedWithTheFirstSeqAndDeliveredOnce()
    {
        var channel = Channel("idem");
        await using var subscriber = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        await subscriber.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });
        await using var publisher = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));

        var first = await publisher.RequestAsync(new ClientFrame { Publish = GrpcClients.Publish(channel, "1", id: "once") });
        var again = await publisher.RequestAsync(new ClientFrame { Publish = GrpcClients.Publish(channel, "1", id: "once") });
        var unary = await Client.PublishAsync(GrpcClients.Publish(channel, "1", id: "once"), GrpcClients.Options(GrpcClients.Key(RelayServer.Key)));
        var next = await publisher.RequestAsync(new ClientFrame { Publish = GrpcClients.Publish(channel, "2") });
        Assert.Equal(1, first.Published.Seqs.Single());
        Assert.Equal(1, again.Published.Seqs.Single());
        Assert.Equal(1, unary.Seqs.Single());
        Assert.Equal(2, next.Published.Seqs.Single());

        Assert.Equal(1, (await subscriber.ReceiveMessageAsync()).Message.Seq);
        Assert.Equal(2, (await subscriber.ReceiveMessageAsync()).Message.Seq);
    }

    [Fact]
    public async Task Subscribe_WithSinceAfterReconnect_RecoversEveryMissedMessageInOrderThenLive()
    {
        var channel = Channel("recover");
        var key = GrpcClients.Key(RelayServer.Key);
        long lastSeen;
        string epoch;
        await using (var first = await GrpcStream.ConnectAsync(Client, key))
        {
            var subscribed = await first.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });
            epoch = subscribed.Subscribed.Epoch;
            await first.RequestAsync(new ClientFrame { Publish = GrpcClients.Publish(channel, "1") });
            lastSeen = (await first.ReceiveMessageAsync()).Message.Seq;
        }

        // Published while the client was away.
        for (var i = 2; i <= 6; i++)
        {
            await Client.PublishAsync(GrpcClients.Publish(channel, i.ToString(System.Globalization.CultureInfo.InvariantCulture)), GrpcClients.Options(key));
        }

        await using var second = await GrpcStream.ConnectAsync(Client, key);
        var resumed = await second.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel, Since = new Since { Epoch = epoch, Seq = lastSeen } } });
        Assert.True(resumed.Subscribed.Recovered);
        Assert.Equal(6, resumed.Subscribed.Seq);
        await Client.PublishAsync(GrpcClients.Publish(channel, "7"), GrpcClients.Options(key));
        for (var seq = 2; seq <= 7; seq++)
        {
            var message = (await second.ReceiveMessageAsync()).Message;
            Assert.Equal(seq, message.Seq);
            Assert.Equal(seq.ToString(System.Globalization.CultureInfo.InvariantCulture), message.Data.Json);
        }

        // A since from another epoch cannot be recovered: the reply says so.
        await using var third = await GrpcStream.ConnectAsync(Client, key);
        var lost = await third.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel, Since = new Since { Epoch = "not-" + epoch, Seq = 1 } } });
        Assert.False(lost.Subscribed.Recovered);
    }

    [Fact]
    public async Task Presence_EnterGetLeave_SeenByWebSocketAndUnaryGet()
    {
        var channel = Channel("presence");
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "watcher"));
        await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key, "bob"));

        var entered = await stream.RequestAsync(new ClientFrame { Presence = new PresenceRequest { Channel = channel, Action = "enter", Data = GrpcClients.Json("{\"status\":\"online\"}") } });
        Assert.Equal(ServerFrame.FrameOneofCase.Presence, entered.FrameCase);
        var seen = await socket.ReceiveMatchingAsync(static e => e.GetProperty("type").GetString() == "presence");
        Assert.Equal("enter", seen.GetProperty("action").GetString());
        Assert.Equal("bob", seen.GetProperty("clientId").GetString());
        Assert.Equal(stream.Connected.ConnectionId, seen.GetProperty("connectionId").GetString());

        var members = await stream.RequestAsync(new ClientFrame { Presence = new PresenceRequest { Channel = channel, Action = "get" } });
        var member = members.Presence.Members.Single();
        Assert.Equal("bob", member.ClientId);
        Assert.Equal("{\"status\":\"online\"}", member.Data.Json);
        var unary = await Client.PresenceAsync(new PresenceRequest { Channel = channel }, GrpcClients.Options(GrpcClients.Key(RelayServer.Key)));
        Assert.Equal("bob", unary.Members.Single().ClientId);

        await stream.RequestAsync(new ClientFrame { Presence = new PresenceRequest { Channel = channel, Action = "leave" } });
        var left = await socket.ReceiveMatchingAsync(static e => e.GetProperty("type").GetString() == "presence");
        Assert.Equal("leave", left.GetProperty("action").GetString());
        Assert.Empty((await Client.PresenceAsync(new PresenceRequest { Channel = channel }, GrpcClients.Options(GrpcClients.Key(RelayServer.Key)))).Members);
    }

    [Fact]
    public async Task PresenceEvent_FromWebSocket_ReachesGrpcSubscriber()
    {
        var channel = Channel("presence-in");
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        await stream.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "carol"));
        await socket.RequestAsync(new() { ["type"] = "presence", ["channel"] = channel, ["action"] = "enter", ["data"] = new { mood = "ok" } });

        var pushed = await stream.ReceiveMatchingAsync(static f => f.FrameCase == ServerFrame.FrameOneofCase.PresenceEvent);
        Assert.Equal("enter", pushed.PresenceEvent.Action);
        Assert.Equal("carol", pushed.PresenceEvent.ClientId);
        Assert.Equal("{\"mood\":\"ok\"}", pushed.PresenceEvent.Data.Json);
    }

    [Fact]
    public async Task History_OnStreamAndUnary_PagesOldestFirstWithBefore()
    {
        var channel = Channel("history");
        var options = GrpcClients.Options(GrpcClients.Key(RelayServer.Key));
        var batch = new PublishRequest { Channel = channel };
        for (var i = 1; i <= 5; i++)
        {
            batch.Messages.Add(new PublishMessage { Data = GrpcClients.Json(i.ToString(System.Globalization.CultureInfo.InvariantCulture)) });
        }

        Assert.Equal([1L, 2, 3, 4, 5], (await Client.PublishAsync(batch, options)).Seqs);
        var page = await Client.HistoryAsync(new HistoryRequest { Channel = channel, Limit = 2 }, options);
        Assert.Equal([4L, 5], page.Messages.Select(static m => m.Seq));
        var older = await Client.HistoryAsync(new HistoryRequest { Channel = channel, Limit = 10, Before = 4 }, options);
        Assert.Equal([1L, 2, 3], older.Messages.Select(static m => m.Seq));

        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        var onStream = await stream.RequestAsync(new ClientFrame { History = new HistoryRequest { Channel = channel } });
        Assert.Equal([1L, 2, 3, 4, 5], onStream.History.Messages.Select(static m => m.Seq));
        Assert.Equal(page.Epoch, onStream.History.Epoch);
        var tooMany = await stream.RequestAsync(new ClientFrame { History = new HistoryRequest { Channel = channel, Limit = 1001 } });
        Assert.Equal(40000, tooMany.Error.Code);
    }

    [Fact]
    public async Task Channels_ListsActiveChannelsWithSubscribers()
    {
        var channel = Channel("listed");
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        await stream.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });
        var options = GrpcClients.Options(GrpcClients.Key(RelayServer.Key));
        var deadline = DateTime.UtcNow + GrpcClients.Timeout;
        ChannelInfo? found = null;
        while (found is null && DateTime.UtcNow < deadline)
        {
            found = (await Client.ChannelsAsync(new ChannelsRequest { Prefix = "grpc-listed:" }, options)).Channels.FirstOrDefault(c => c.Channel == channel);
            if (found is null)
            {
                await Task.Delay(50);
            }
        }

        Assert.NotNull(found);
        Assert.Equal(1, found.Subscribers);

        // Another app's credentials see none of this app's channels.
        var other = await Client.ChannelsAsync(new ChannelsRequest { Prefix = "grpc-listed:" }, GrpcClients.Options(GrpcClients.Key(RelayServer.OtherAppKey)));
        Assert.DoesNotContain(other.Channels, c => c.Channel == channel);
    }

    [Fact]
    public async Task Connect_WithBadOrNoCredentials_EndsUnauthenticatedWithTheProtocolsCode()
    {
        var badSecret = await Assert.ThrowsAsync<RpcException>(() => GrpcStream.ConnectAsync(Client, GrpcClients.Key("test.root:wrong-secret-0123456789")));
        Assert.Equal(StatusCode.Unauthenticated, badSecret.StatusCode);
        Assert.Equal(40102, GrpcClients.RelayCode(badSecret));

        var badToken = await Assert.ThrowsAsync<RpcException>(() => GrpcStream.ConnectAsync(Client, GrpcClients.Bearer(TestTokens.Hs256("test.root", "not-the-secret-0123456789", new() { ["app"] = "test", ["exp"] = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds() }))));
        Assert.Equal(StatusCode.Unauthenticated, badToken.StatusCode);
        Assert.Equal(40102, GrpcClients.RelayCode(badToken));

        var expired = await Assert.ThrowsAsync<RpcException>(() => Client.HistoryAsync(new HistoryRequest { Channel = "a" }, GrpcClients.Options(GrpcClients.Bearer(TestTokens.ForRootKey("x", TimeSpan.FromMinutes(-5))))).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, expired.StatusCode);
        Assert.Equal(40142, GrpcClients.RelayCode(expired));

        var none = await Assert.ThrowsAsync<RpcException>(() => Client.PublishAsync(GrpcClients.Publish("a", "1"), GrpcClients.Options([])).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, none.StatusCode);
        Assert.Equal(40101, GrpcClients.RelayCode(none));
    }

    [Fact]
    public async Task Operations_TheKeyDoesNotAllow_AreRefusedWith40300()
    {
        var channel = Channel("caps");
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.SubscribeOnlyKey));
        var publish = await stream.RequestAsync(new ClientFrame { Publish = GrpcClients.Publish(channel, "1") });
        Assert.Equal(40300, publish.Error.Code);
        var enter = await stream.RequestAsync(new ClientFrame { Presence = new PresenceRequest { Channel = channel, Action = "enter" } });
        Assert.Equal(40300, enter.Error.Code);

        // The stream stays open after a refusal.
        var subscribed = await stream.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });
        Assert.Equal(ServerFrame.FrameOneofCase.Subscribed, subscribed.FrameCase);

        var unary = await Assert.ThrowsAsync<RpcException>(() => Client.PublishAsync(GrpcClients.Publish(channel, "1"), GrpcClients.Options(GrpcClients.Key(RelayServer.SubscribeOnlyKey))).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, unary.StatusCode);
        Assert.Equal(40300, GrpcClients.RelayCode(unary));

        await using var chat = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.ChatOnlyKey));
        var outside = await chat.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = "news:" + Guid.NewGuid().ToString("N") } });
        Assert.Equal(40300, outside.Error.Code);
    }

    [Fact]
    public async Task Publish_InOneApp_NeverReachesAnotherAppsSubscriberOrHistory()
    {
        var channel = Channel("apps");
        await using var other = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.OtherAppKey));
        await other.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });
        await using var mine = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        await mine.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });

        await Client.PublishAsync(GrpcClients.Publish(channel, "\"secret\""), GrpcClients.Options(GrpcClients.Key(RelayServer.Key)));
        Assert.Equal(1, (await mine.ReceiveMessageAsync()).Message.Seq);

        // The other app's channel of the same name gets its own seq 1, and only its own message.
        await Client.PublishAsync(GrpcClients.Publish(channel, "\"theirs\""), GrpcClients.Options(GrpcClients.Key(RelayServer.OtherAppKey)));
        var theirs = (await other.ReceiveMessageAsync()).Message;
        Assert.Equal("\"theirs\"", theirs.Data.Json);
        Assert.Equal(1, theirs.Seq);
        var history = await Client.HistoryAsync(new HistoryRequest { Channel = channel }, GrpcClients.Options(GrpcClients.Key(RelayServer.OtherAppKey)));
        Assert.Equal("\"theirs\"", history.Messages.Single().Data.Json);
    }

    [Fact]
    public async Task BadFrames_GetErrorFramesAndTheStreamStaysOpen()
    {
        var channel = Channel("bad");
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        Assert.Equal(40000, (await stream.RequestAsync(new ClientFrame())).Error.Code);
        Assert.Equal(40000, (await stream.RequestAsync(new ClientFrame { Publish = new PublishRequest { Channel = channel, Messages = { new PublishMessage { Data = GrpcClients.Json("{not json") } } } })).Error.Code);
        Assert.Equal(40000, (await stream.RequestAsync(new ClientFrame { Publish = new PublishRequest { Channel = channel, Messages = { new PublishMessage() } } })).Error.Code);
        Assert.Equal(40000, (await stream.RequestAsync(new ClientFrame { Publish = GrpcClients.Publish(channel, "1", id: new string('x', 65)) })).Error.Code);
        Assert.Equal(40002, (await stream.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = "a//b" } })).Error.Code);
        Assert.Equal(40002, (await stream.RequestAsync(new ClientFrame { Publish = GrpcClients.Publish("chat:+", "1") })).Error.Code);
        Assert.Equal(40000, (await stream.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = "grpc-bad/+", Rewind = 3 } })).Error.Code);
        Assert.Equal(40000, (await stream.RequestAsync(new ClientFrame { Presence = new PresenceRequest { Channel = channel, Action = "dance" } })).Error.Code);

        // Larger than maxMessageBytes (4096 here) but within the gRPC message limit: 41300, and the stream goes on.
        var large = await stream.RequestAsync(new ClientFrame { Publish = GrpcClients.Publish(channel, "\"" + new string('a', 5000) + "\"") });
        Assert.Equal(41300, large.Error.Code);
        var fine = await stream.RequestAsync(new ClientFrame { Publish = GrpcClients.Publish(channel, "{\"ok\": true}") });
        Assert.Equal(1, fine.Published.Seqs.Single());

        var unaryLarge = await Assert.ThrowsAsync<RpcException>(() => Client.PublishAsync(GrpcClients.Publish(channel, "\"" + new string('a', 5000) + "\""), GrpcClients.Options(GrpcClients.Key(RelayServer.Key))).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, unaryLarge.StatusCode);
        Assert.Equal(41300, GrpcClients.RelayCode(unaryLarge));
    }

    [Fact]
    public async Task Frame_LargerThanTheGrpcMessageLimit_EndsTheCallResourceExhaustedAndTheNodeServesOn()
    {
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        try
        {
            await stream.SendAsync(new ClientFrame { Publish = GrpcClients.Publish(Channel("huge"), "\"" + new string('a', 2 * 1024 * 1024) + "\"") }).WaitAsync(GrpcClients.Timeout);
        }
        catch (Exception ex) when (ex is RpcException or TimeoutException)
        {
            // The server may end the call while the client still sends the rest (the send then fails, or, under load,
            // waits on a flow-control window the server no longer opens): the status is read below.
        }

        await stream.DrainUntilEndedAsync();
        Assert.NotNull(stream.Ended);
        Assert.Equal(StatusCode.ResourceExhausted, stream.Ended.StatusCode);

        await using var next = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        Assert.Equal(ServerFrame.FrameOneofCase.Pong, (await next.RequestAsync(new ClientFrame { Ping = new PingRequest() })).FrameCase);
    }

    [Fact]
    public async Task Publish_ThousandsAtOnce_ArriveInSeqOrderOnGrpcAndWebSocketEachOnce()
    {
        const int Batches = 30;
        const int PerBatch = 100;
        const int Pipelined = 150;
        const int Count = (Batches * PerBatch) + Pipelined;
        var channel = Channel("order");
        await using var subscriber = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        await subscriber.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });

        // 30 unary batches of 100 at once, and 150 stream publishes sent without waiting for their acks (within the
        // connection's publish burst of 200).
        await using var publisher = await GrpcStream.ConnectAsync(Client, GrpcClients.Key(RelayServer.Key));
        var options = GrpcClients.Options(GrpcClients.Key(RelayServer.Key));
        var batches = Enumerable.Range(0, Batches).Select(b =>
        {
            var request = new PublishRequest { Channel = channel };
            for (var i = 0; i < PerBatch; i++)
            {
                request.Messages.Add(new PublishMessage { Data = GrpcClients.Json(((b * PerBatch) + i).ToString(System.Globalization.CultureInfo.InvariantCulture)) });
            }

            return Client.PublishAsync(request, options).ResponseAsync;
        }).ToList();
        for (var i = 0; i < Pipelined; i++)
        {
            await publisher.SendAsync(new ClientFrame { Ref = "p" + i, Publish = GrpcClients.Publish(channel, ((Batches * PerBatch) + i).ToString(System.Globalization.CultureInfo.InvariantCulture)) }).WaitAsync(GrpcClients.Timeout);
        }

        var results = await Task.WhenAll(batches).WaitAsync(TimeSpan.FromSeconds(60));
        foreach (var result in results)
        {
            // A batch's messages are sequenced together, in the batch's order.
            Assert.Equal(Enumerable.Range((int)result.Seqs[0], PerBatch).Select(static s => (long)s), result.Seqs);
        }

        var values = new HashSet<string>();
        for (var seq = 1; seq <= Count; seq++)
        {
            var message = (await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(30))).Message;
            Assert.Equal(seq, message.Seq);
            Assert.True(values.Add(message.Data.Json), $"seq {seq} repeats {message.Data.Json}");
        }

        Assert.Equal(Count, values.Count);
        for (var seq = 1; seq <= Count; seq++)
        {
            Assert.Equal(seq, (await socket.ReceiveMessageAsync(TimeSpan.FromSeconds(30))).GetProperty("seq").GetInt64());
        }

        for (var i = 0; i < Pipelined; i++)
        {
            var ack = await publisher.ReceiveMatchingAsync(f => f.Ref == "p" + i, TimeSpan.FromSeconds(30));
            Assert.Equal(ServerFrame.FrameOneofCase.Published, ack.FrameCase);
        }
    }

    [Fact]
    public async Task Auth_WithANewToken_RenewsAndAnotherAppsTokenIsRefused()
    {
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Bearer(TestTokens.ForRootKey("dana", TimeSpan.FromMinutes(1))));
        Assert.Equal("dana", stream.Connected.ClientId);
        var renewed = await stream.RequestAsync(new ClientFrame { Auth = new AuthRequest { Token = TestTokens.ForRootKey("dana", TimeSpan.FromMinutes(30)) } });
        Assert.Equal(ServerFrame.FrameOneofCase.Auth, renewed.FrameCase);
        Assert.InRange(renewed.Auth.ExpiresAt, DateTimeOffset.UtcNow.AddMinutes(25).ToUnixTimeMilliseconds(), DateTimeOffset.UtcNow.AddMinutes(31).ToUnixTimeMilliseconds());

        var otherClient = await stream.RequestAsync(new ClientFrame { Auth = new AuthRequest { Token = TestTokens.ForRootKey("eve", TimeSpan.FromMinutes(30)) } });
        Assert.Equal(40102, otherClient.Error.Code);
        var garbage = await stream.RequestAsync(new ClientFrame { Auth = new AuthRequest { Token = "not.a.jwt" } });
        Assert.Equal(40102, garbage.Error.Code);
    }

    [Fact]
    public async Task Auth_WithNarrowerCapabilities_DropsTheSubscriptionWith40300NamingItsChannel()
    {
        var channel = Channel("narrow");
        await using var stream = await GrpcStream.ConnectAsync(Client, GrpcClients.Bearer(TestTokens.ForRootKey("fay", TimeSpan.FromMinutes(5))));
        await stream.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });
        var narrower = TestTokens.ForRootKey("fay", TimeSpan.FromMinutes(5), new Dictionary<string, string[]> { ["chat:*"] = ["subscribe"] });
        await stream.RequestAsync(new ClientFrame { Auth = new AuthRequest { Token = narrower } });
        var dropped = await stream.ReceiveMatchingAsync(static f => f.FrameCase == ServerFrame.FrameOneofCase.Error && f.Ref.Length == 0);
        Assert.Equal(40300, dropped.Error.Code);
        Assert.Equal(channel, dropped.Error.Channel);
    }
}
