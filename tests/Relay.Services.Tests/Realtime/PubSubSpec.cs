using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

public abstract class PubSubSpec(IServerFixture fixture)
{
    private readonly RelayServer _server = fixture.Server;

    private Task<TestSocket> ConnectAsync(string? clientId = null, string key = RelayServer.Key) =>
        TestSocket.ConnectAsync(_server.RealtimeUriWithKey(key, clientId));

    private static async Task<JsonElement> OkAsync(TestSocket socket, Dictionary<string, object?> request)
    {
        var reply = await socket.RequestAsync(request);
        Assert.True(reply.GetProperty("type").GetString() == "ok", "expected ok, got " + reply.GetRawText());
        return reply;
    }

    [Fact]
    public async Task PublishesSentWithoutWaiting_AreSequencedInSendOrder_AndEachAnswered()
    {
        await using var subscriber = await ConnectAsync("sub");
        await using var publisher = await ConnectAsync("burst");
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "chat:burst" });

        // 150 publishes in one go (more than a connection keeps in flight; within the default burst), then a ping: over a networked bus they are
        // pipelined, and still take seqs in the order they were sent; the ping is answered after every publish.
        const int Count = 150;
        for (var i = 1; i <= Count; i++)
        {
            await publisher.SendAsync(new Dictionary<string, object?> { ["type"] = "publish", ["channel"] = "chat:burst", ["data"] = i, ["ref"] = i });
        }

        await publisher.SendAsync(new Dictionary<string, object?> { ["type"] = "ping", ["ref"] = Count + 1 });
        var seqOfRef = new Dictionary<int, long>();
        while (true)
        {
            var reply = await publisher.ReceiveAsync();
            var reference = reply.GetProperty("ref").GetInt32();
            if (reference == Count + 1)
            {
                Assert.Equal("pong", reply.GetProperty("type").GetString());
                break;
            }

            Assert.True(reply.GetProperty("type").GetString() == "ok", reply.GetRawText());
            seqOfRef[reference] = reply.GetProperty("seq").GetInt64();
        }

        Assert.Equal(Count, seqOfRef.Count);
        Assert.All(seqOfRef, pair => Assert.Equal(pair.Key, pair.Value));
        for (var i = 1; i <= Count; i++)
        {
            var message = await subscriber.ReceiveMessageAsync();
            Assert.Equal(i, message.GetProperty("seq").GetInt64());
            Assert.Equal(i, message.GetProperty("data").GetInt32());
        }
    }

    [Fact]
    public async Task Publish_ToSubscribedChannel_DeliversMessageWithEveryField()
    {
        await using var subscriber = await ConnectAsync("sub");
        await using var publisher = await ConnectAsync("alice");
        var subscribed = await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "chat:fields" });
        Assert.Equal("chat:fields", subscribed.GetProperty("channel").GetString());
        Assert.Equal(0, subscribed.GetProperty("seq").GetInt64());
        Assert.False(string.IsNullOrEmpty(subscribed.GetProperty("epoch").GetString()));

        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var ack = await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "chat:fields", ["name"] = "chat", ["id"] = "k1", ["data"] = new { text = "hi" } });
        Assert.Equal(1, ack.GetProperty("seq").GetInt64());
        Assert.Equal("chat:fields", ack.GetProperty("channel").GetString());

        var message = await subscriber.ReceiveMessageAsync();
        Assert.Equal("chat:fields", message.GetProperty("channel").GetString());
        Assert.Equal(1, message.GetProperty("seq").GetInt64());
        Assert.Equal(subscribed.GetProperty("epoch").GetString(), message.GetProperty("epoch").GetString());
        Assert.Equal("k1", message.GetProperty("id").GetString());
        Assert.Equal("chat", message.GetProperty("name").GetString());
        Assert.Equal("hi", message.GetProperty("data").GetProperty("text").GetString());
        Assert.Equal("alice", message.GetProperty("clientId").GetString());
        Assert.InRange(message.GetProperty("timestamp").GetInt64(), before - 1000, before + 10_000);
    }

    [Fact]
    public async Task Publish_ManyMessages_SeqIsGaplessAndInOrder()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "order" });
        for (var i = 1; i <= 50; i++)
        {
            await publisher.SendAsync(new { type = "publish", @ref = i, channel = "order", data = i });
        }

        for (var i = 1; i <= 50; i++)
        {
            var message = await subscriber.ReceiveMessageAsync();
            Assert.Equal(i, message.GetProperty("seq").GetInt64());
            Assert.Equal(i, message.GetProperty("data").GetInt32());
        }
    }

    [Fact]
    public async Task Publish_BatchedRequests_RepliesToEachWithItsRef()
    {
        await using var socket = await ConnectAsync();
        await socket.SendTextAsync("""[{"type":"ping","ref":"a"},{"type":"publish","ref":7,"channel":"batch","data":null},{"type":"nope","ref":8}]""");
        var first = await socket.ReceiveAsync();
        var second = await socket.ReceiveAsync();
        var third = await socket.ReceiveAsync();
        Assert.Equal("pong", first.GetProperty("type").GetString());
        Assert.Equal("a", first.GetProperty("ref").GetString());
        Assert.Equal("ok", second.GetProperty("type").GetString());
        Assert.Equal(7, second.GetProperty("ref").GetInt32());
        Assert.Equal("error", third.GetProperty("type").GetString());
        Assert.Equal(8, third.GetProperty("ref").GetInt32());
        Assert.Equal(40000, third.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Publish_AgainAndAgainToANameThatNeedsEscaping_AnswersEachWithItsRefChannelAndSeq()
    {
        // Publishes to the channel a connection just published to are answered from kept bytes: they must read the same.
        var channel = "chat:\"q\"\\b/ünï/😀<&>" + Guid.NewGuid().ToString("N")[..6];
        var channelJson = JsonSerializer.Serialize(channel);
        await using var socket = await ConnectAsync();
        await socket.SendTextAsync($$"""[{"type":"publish","ref":1,"channel":{{channelJson}},"data":1},{"type":"publish","ref":"two\"2","channel":{{channelJson}},"data":2},{"type":"publish","channel":{{channelJson}},"data":3},{"type":"publish","ref":4,"channel":{{channelJson}},"data":4},{"type":"ping","ref":5}]""");

        var replies = new List<JsonElement>();
        for (var i = 0; i < 5; i++)
        {
            replies.Add(await socket.ReceiveAsync());
        }

        // Pipelined over a networked bus, the oks may come in any order: each names the channel, one seq each, every ref
        // as it was sent (and none for the publish that had none).
        var oks = replies.Take(4).ToList();
        Assert.All(oks, static r => Assert.Equal("ok", r.GetProperty("type").GetString()));
        Assert.All(oks, r => Assert.Equal(channel, r.GetProperty("channel").GetString()));
        Assert.Equal([1L, 2L, 3L, 4L], oks.Select(static r => r.GetProperty("seq").GetInt64()).Order());
        Assert.Equal(["\"two\\\"2\"", "1", "4", "none"], oks.Select(static r => r.TryGetProperty("ref", out var reference) ? reference.GetRawText() : "none").Order(StringComparer.Ordinal));
        Assert.Equal("pong", replies[4].GetProperty("type").GetString());
    }

    [Fact]
    public async Task Subscribe_PlusPattern_ReceivesOneLevelOnly()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "scores/+" });
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "scores/a/deep", ["data"] = 1 });
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "scores/b", ["data"] = 2 });
        var message = await subscriber.ReceiveMessageAsync();
        Assert.Equal("scores/b", message.GetProperty("channel").GetString());
        Assert.Equal(2, message.GetProperty("data").GetInt32());
    }

    [Fact]
    public async Task Subscribe_HashPattern_ReceivesEveryLevelBelow()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "feeds/#" });
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "feeds/x/y/z", ["data"] = 1 });
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "other/x", ["data"] = 2 });
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "feeds/q", ["data"] = 3 });

        // Order is per channel: over a Redis Cluster the two channels' messages leave from different masters.
        string?[] received = [(await subscriber.ReceiveMessageAsync()).GetProperty("channel").GetString(), (await subscriber.ReceiveMessageAsync()).GetProperty("channel").GetString()];
        Assert.Equal(["feeds/q", "feeds/x/y/z"], received.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Subscribe_ChannelAndMatchingPattern_DeliversOnce()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "dup/a" });
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "dup/+" });
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "dup/a", ["data"] = 1 });
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "dup/a", ["data"] = 2 });
        Assert.Equal(1, (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetInt32());
        Assert.Equal(2, (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetInt32());
    }

    [Fact]
    public async Task OverlappingSubscriptions_WhileOtherChannelsDeliverAtRate_DeliverEachMessageOnce()
    {
        // A channel, a pattern matching it and a wider one, on one connection; eight publishers at once on eight channels,
        // so other channels' deliveries to this connection run between a message's matching subscriptions. Each
        // publisher sends in bursts its rate limit lets through (100 a second by default).
        const int PerChannel = 200;
        const int Window = 50;
        var channels = Enumerable.Range(0, 8).Select(static i => "overlap/" + (char)('a' + i)).ToArray();
        await using var subscriber = await ConnectAsync();
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "overlap/a" });
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "overlap/+" });
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "overlap/#" });
        var publishing = channels.Select(async channel =>
        {
            await using var publisher = await ConnectAsync();
            for (var sent = 0; sent < PerChannel; sent += Window)
            {
                for (var i = 1; i <= Window; i++)
                {
                    await publisher.SendAsync(new Dictionary<string, object?> { ["type"] = "publish", ["channel"] = channel, ["data"] = sent + i, ["ref"] = sent + i });
                }

                for (var i = 0; i < Window; i++)
                {
                    var ack = await publisher.ReceiveAsync(TimeSpan.FromSeconds(20));
                    Assert.True(ack.GetProperty("type").GetString() == "ok", ack.GetRawText());
                }

                await Task.Delay(500);
            }
        }).ToList();

        var seqs = channels.ToDictionary(static c => c, static _ => new List<long>());
        var total = 0;
        while (total < channels.Length * PerChannel)
        {
            var next = subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(20));
            if (await Task.WhenAny(next, Task.WhenAll(publishing)) != next && publishing.FirstOrDefault(static p => p.IsFaulted) is { } failed)
            {
                await failed;
            }

            var message = await next;
            seqs[message.GetProperty("channel").GetString()!].Add(message.GetProperty("seq").GetInt64());
            total++;
        }

        await Task.WhenAll(publishing).WaitAsync(TimeSpan.FromSeconds(60));

        // Nothing more comes: a repeat would have made the count reach the total early, and its channel's list show it.
        await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromMilliseconds(500)));
        Assert.All(channels, c => Assert.Equal(Enumerable.Range(1, PerChannel).Select(static i => (long)i), seqs[c]));
    }

    [Fact]
    public async Task Unsubscribe_StopsDelivery()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "unsub" });
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "unsub-marker" });
        var reply = await OkAsync(subscriber, new() { ["type"] = "unsubscribe", ["channel"] = "unsub" });
        Assert.Equal("unsub", reply.GetProperty("channel").GetString());
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "unsub", ["data"] = "gone" });
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "unsub-marker", ["data"] = "marker" });

        // The marker was published after: if the unsubscribed message were delivered, it would come first.
        var next = await subscriber.ReceiveMessageAsync();
        Assert.Equal("unsub-marker", next.GetProperty("channel").GetString());
    }

    [Fact]
    public async Task Publish_InOneApp_IsNeverSeenByAnotherAppOnTheSameChannel()
    {
        await using var stranger = await ConnectAsync(key: RelayServer.OtherAppKey);
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        await OkAsync(stranger, new() { ["type"] = "subscribe", ["channel"] = "secret" });
        await OkAsync(stranger, new() { ["type"] = "subscribe", ["channel"] = "#" });
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "secret" });
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "secret", ["data"] = "for test app only" });
        Assert.Equal("for test app only", (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetString());

        var history = await OkAsync(stranger, new() { ["type"] = "history", ["channel"] = "secret" });
        Assert.Equal(0, history.GetProperty("messages").GetArrayLength());
        await Assert.ThrowsAsync<TimeoutException>(() => stranger.ReceiveMessageAsync(TimeSpan.FromMilliseconds(500)));
    }

    [Fact]
    public async Task History_ReturnsOldestFirstWithLimitAndBefore()
    {
        await using var socket = await ConnectAsync();
        for (var i = 1; i <= 5; i++)
        {
            await OkAsync(socket, new() { ["type"] = "publish", ["channel"] = "hist", ["data"] = i });
        }

        var all = await OkAsync(socket, new() { ["type"] = "history", ["channel"] = "hist" });
        Assert.Equal([1L, 2, 3, 4, 5], all.GetProperty("messages").EnumerateArray().Select(static m => m.GetProperty("seq").GetInt64()));
        var page = await OkAsync(socket, new() { ["type"] = "history", ["channel"] = "hist", ["limit"] = 2, ["before"] = 5 });
        Assert.Equal([3L, 4], page.GetProperty("messages").EnumerateArray().Select(static m => m.GetProperty("seq").GetInt64()));
        Assert.Equal(all.GetProperty("epoch").GetString(), page.GetProperty("epoch").GetString());
    }

    [Fact]
    public async Task Subscribe_WithSinceAfterReconnect_RecoversMissedMessagesInOrder()
    {
        await using var publisher = await ConnectAsync();
        string epoch;
        long lastSeen;
        await using (var first = await ConnectAsync())
        {
            var ok = await OkAsync(first, new() { ["type"] = "subscribe", ["channel"] = "recover" });
            epoch = ok.GetProperty("epoch").GetString()!;
            await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "recover", ["data"] = 1 });
            lastSeen = (await first.ReceiveMessageAsync()).GetProperty("seq").GetInt64();
        }

        for (var i = 2; i <= 4; i++)
        {
            await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "recover", ["data"] = i });
        }

        await using var second = await ConnectAsync();
        var resumed = await OkAsync(second, new() { ["type"] = "subscribe", ["channel"] = "recover", ["since"] = new { epoch, seq = lastSeen } });
        Assert.True(resumed.GetProperty("recovered").GetBoolean());
        Assert.Equal(4, resumed.GetProperty("seq").GetInt64());
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "recover", ["data"] = 5 });
        for (var i = 2; i <= 5; i++)
        {
            Assert.Equal(i, (await second.ReceiveMessageAsync()).GetProperty("seq").GetInt64());
        }
    }

    [Fact]
    public async Task Subscribe_WithSinceOfUnknownEpoch_IsNotRecovered()
    {
        await using var socket = await ConnectAsync();
        var ok = await OkAsync(socket, new() { ["type"] = "subscribe", ["channel"] = "epochs", ["since"] = new { epoch = "nope", seq = 3 } });
        Assert.False(ok.GetProperty("recovered").GetBoolean());
    }

    [Fact]
    public async Task Subscribe_WithRewind_SendsLastMessagesFirst()
    {
        await using var socket = await ConnectAsync();
        for (var i = 1; i <= 4; i++)
        {
            await OkAsync(socket, new() { ["type"] = "publish", ["channel"] = "rewind", ["data"] = i });
        }

        await OkAsync(socket, new() { ["type"] = "subscribe", ["channel"] = "rewind", ["rewind"] = 2 });
        Assert.Equal(3, (await socket.ReceiveMessageAsync()).GetProperty("seq").GetInt64());
        Assert.Equal(4, (await socket.ReceiveMessageAsync()).GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task Publish_SameIdTwice_ReturnsFirstSeqAndDeliversOnce()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "idem" });
        var first = await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "idem", ["id"] = "once", ["data"] = 1 });
        var again = await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "idem", ["id"] = "once", ["data"] = 1 });
        await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "idem", ["data"] = 2 });
        Assert.Equal(first.GetProperty("seq").GetInt64(), again.GetProperty("seq").GetInt64());
        Assert.Equal(1, (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetInt32());
        var next = await subscriber.ReceiveMessageAsync();
        Assert.Equal(2, next.GetProperty("data").GetInt32());
        Assert.Equal(2, next.GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task Deliver_BurstToSubscriber_ArrivesCompleteAndMayBeBatched()
    {
        await using var subscriber = await ConnectAsync();
        await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "burst" });
        using var http = new HttpClient { BaseAddress = _server.BaseAddress };
        http.DefaultRequestHeaders.Authorization = new("Basic", Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(RelayServer.Key)));
        var batch = string.Join(",", Enumerable.Range(1, 100).Select(static i => $$"""{"data":{{i}}}"""));
        using var response = await http.PostAsync("v1/channels/burst/messages", new StringContent("[" + batch + "]")).WaitAsync(TestSocket.DefaultTimeout);
        Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
        for (var i = 1; i <= 100; i++)
        {
            Assert.Equal(i, (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetInt32());
        }
    }

    [Fact]
    public async Task Subscribe_WithSinceWhilePublishesKeepArriving_HasNoGapAndNoDuplicateAtTheSeam()
    {
        await using var publisher = await ConnectAsync();
        var first = await OkAsync(publisher, new() { ["type"] = "publish", ["channel"] = "seam", ["data"] = 1 });
        var epoch = (await OkAsync(publisher, new() { ["type"] = "history", ["channel"] = "seam", ["limit"] = 1 })).GetProperty("epoch").GetString();

        // A second publisher keeps publishing while the resuming subscriber catches up.
        const int total = 150;
        await using var stream = await ConnectAsync();
        var publishing = Task.Run(async () =>
        {
            for (var i = 2; i <= total; i++)
            {
                await stream.SendAsync(new { type = "publish", @ref = i, channel = "seam", data = i });
                if (i % 10 == 0)
                {
                    await Task.Delay(1);
                }
            }
        });

        await Task.Delay(5);
        await using var subscriber = await ConnectAsync();
        var ok = await OkAsync(subscriber, new() { ["type"] = "subscribe", ["channel"] = "seam", ["since"] = new { epoch, seq = first.GetProperty("seq").GetInt64() } });
        Assert.True(ok.GetProperty("recovered").GetBoolean());
        await publishing.WaitAsync(TestSocket.DefaultTimeout);
        for (var expected = 2; expected <= total; expected++)
        {
            var message = await subscriber.ReceiveMessageAsync();
            Assert.Equal(expected, message.GetProperty("seq").GetInt64());
        }

        await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromMilliseconds(300)));
    }
}
