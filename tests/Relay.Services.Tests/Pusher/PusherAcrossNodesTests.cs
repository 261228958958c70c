using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>Two nodes over one Redis: pusher-js on one and pusher-js and the server SDK on the other share channels, presence and counts.</summary>
public sealed class PusherAcrossNodesTests(RedisBusFixture redis) : IClassFixture<RedisBusFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task PusherClients_OnTwoNodes_SharePresenceClientEventsAndOrderedApiEvents()
    {
        const int Count = 300;
        var settings = PusherServerFixture.Settings();
        redis.AddTo(settings);
        settings["Relay:Namespaces:Defaults:HistorySize"] = "1000";
        await using var a = await RelayServer.StartAsync(settings);
        await using var b = await RelayServer.StartAsync(settings);
        var room = "presence-nodes-" + Guid.NewGuid().ToString("N")[..12];

        using var atA = PusherScript.Start("pusher-client.cjs", PusherScript.Options(a, RelayServer.Key, new { user = new { user_id = "on-a", user_info = new { node = "a" } } }));
        atA.Send(new { op = "subscribe", channel = room });
        Assert.Equal(1, (await atA.NextAsync("subscribed", Timeout, room)).GetProperty("count").GetInt32());

        using var atB = PusherScript.Start("pusher-client.cjs", PusherScript.Options(b, RelayServer.Key, new { user = new { user_id = "on-b", user_info = new { node = "b" } } }));
        atB.Send(new { op = "subscribe", channel = room });
        Assert.Equal(2, (await atB.NextAsync("subscribed", Timeout, room)).GetProperty("count").GetInt32());
        Assert.Equal("b", (await atA.NextAsync("member_added", Timeout, room)).GetProperty("info").GetProperty("node").GetString());

        atA.Send(new { op = "bind", channel = room, @event = "client-hello" });
        await atA.NextAsync("bound-ready", Timeout);
        atB.Send(new { op = "trigger", channel = room, @event = "client-hello", data = new { from = "b" } });
        var hello = await atA.NextAsync("bound", Timeout, room);
        Assert.Equal("b", hello.GetProperty("data").GetProperty("from").GetString());
        Assert.Equal("on-b", hello.GetProperty("user_id").GetString());

        // Node B's HTTP API counts node A's subscriber, and its events reach node A in order.
        var info = await PusherScript.RunAsync(Timeout, "pusher-server.cjs", PusherScript.Options(b, RelayServer.Key), JsonSerializer.Serialize(new { op = "channel", channel = room, @params = new { info = "subscription_count,user_count" } }));
        Assert.Equal(2, info.GetProperty("body").GetProperty("subscription_count").GetInt32());
        Assert.Equal(2, info.GetProperty("body").GetProperty("user_count").GetInt32());
        using var http = new HttpClient();
        for (var start = 1; start <= Count; start += 10)
        {
            var batch = Enumerable.Range(start, 10).Select(i => new { channel = room, name = "n", data = $"{{\"i\":{i}}}" });
            using var response = await http.SendAsync(PusherHttp.Request(b, RelayServer.Key, HttpMethod.Post, "/apps/test/batch_events", JsonSerializer.Serialize(new { batch }))).WaitAsync(Timeout);
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        }

        for (var i = 1; i <= Count; i++)
        {
            Assert.Equal(i, (await atA.NextAsync(static e => e.GetProperty("kind").GetString() == "event" && e.GetProperty("event").GetString() == "n", Timeout)).GetProperty("data").GetProperty("i").GetInt32());
        }

        atB.Send(new { op = "disconnect" });
        Assert.Equal("on-b", (await atA.NextAsync("member_removed", Timeout, room)).GetProperty("id").GetString());
    }

    [Fact]
    public async Task PusherJsOverHttp_OnOneNode_TalksWithAWebSocketClientOnAnother_AndItsSessionIsOnlyOnItsNode()
    {
        var settings = PusherServerFixture.Settings();
        redis.AddTo(settings);
        await using var a = await RelayServer.StartAsync(settings);
        await using var b = await RelayServer.StartAsync(settings);
        var chat = "private-nodes-" + Guid.NewGuid().ToString("N")[..12];

        using var polling = PusherScript.Start("pusher-client.cjs", PusherScript.Options(a, RelayServer.Key, new { transports = new[] { "xhr_polling" } }));
        Assert.Equal("xhr_polling", (await polling.NextAsync("connected", Timeout)).GetProperty("transport").GetString());
        using var ws = PusherScript.Start("pusher-client.cjs", PusherScript.Options(b, RelayServer.Key));
        polling.Send(new { op = "subscribe", channel = chat });
        await polling.NextAsync("subscribed", Timeout, chat);
        ws.Send(new { op = "subscribe", channel = chat });
        await ws.NextAsync("subscribed", Timeout, chat);

        polling.Send(new { op = "trigger", channel = chat, @event = "client-ping", data = new { from = "a" } });
        Assert.Equal("a", (await ws.NextAsync("event", Timeout, chat)).GetProperty("data").GetProperty("from").GetString());
        ws.Send(new { op = "trigger", channel = chat, @event = "client-pong", data = new { from = "b" } });
        Assert.Equal("b", (await polling.NextAsync("event", Timeout, chat)).GetProperty("data").GetProperty("from").GetString());

        // A session opened on node A is unknown to node B: a balancer must route its path to A (docs/pusher.md).
        using var http = new HttpClient();
        const string Session = "pusher/app/test.root/7/nodesab1/";
        using var open = await http.PostAsync(new Uri(a.BaseAddress, Session + "xhr?protocol=7"), new StringContent(string.Empty)).WaitAsync(Timeout);
        Assert.Equal("o\n", await open.Content.ReadAsStringAsync().WaitAsync(Timeout));
        using var elsewhere = await http.PostAsync(new Uri(b.BaseAddress, Session + "xhr_send"), new StringContent("[]")).WaitAsync(Timeout);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, elsewhere.StatusCode);
    }

    [Fact]
    public async Task Watchlist_UsersOnEitherNode_AreToldOnlineAndOffline_OncePerUser()
    {
        var settings = PusherServerFixture.Settings();
        redis.AddTo(settings);
        settings["Relay:Pusher:Apps:test:Watchlists"] = "true";
        await using var a = await RelayServer.StartAsync(settings);
        await using var b = await RelayServer.StartAsync(settings);
        var tag = Guid.NewGuid().ToString("N")[..8];
        string Friend(int i) => $"friend{i}-{tag}";

        // friend1 is online on node B before the watcher signs in; friend2 is not yet.
        using var friend1 = PusherScript.Start("pusher-client.cjs", PusherScript.Options(b, RelayServer.Key, new { user = new { user_id = Friend(1) } }));
        await friend1.NextAsync("connected", Timeout);
        friend1.Send(new { op = "signin" });
        await friend1.NextAsync("signin", Timeout);

        using var watcher = PusherScript.Start("pusher-client.cjs", PusherScript.Options(a, RelayServer.Key, new { user = new { user_id = "watcher-" + tag, watchlist = new[] { Friend(1), Friend(2), Friend(3) } } }));
        await watcher.NextAsync("connected", Timeout);
        watcher.Send(new { op = "signin" });
        var first = await watcher.NextAsync("watchlist", Timeout);
        Assert.Equal("online", first.GetProperty("name").GetString());
        Assert.Equal([Friend(1)], first.GetProperty("user_ids").EnumerateArray().Select(static u => u.GetString()));

        // friend2 comes online on node A with two connections: one online event; offline only when both have gone.
        using var friend2a = PusherScript.Start("pusher-client.cjs", PusherScript.Options(a, RelayServer.Key, new { user = new { user_id = Friend(2) } }));
        await friend2a.NextAsync("connected", Timeout);
        friend2a.Send(new { op = "signin" });
        var online = await watcher.NextAsync("watchlist", Timeout);
        Assert.Equal(("online", Friend(2)), (online.GetProperty("name").GetString(), online.GetProperty("user_ids")[0].GetString()));
        using var friend2b = PusherScript.Start("pusher-client.cjs", PusherScript.Options(b, RelayServer.Key, new { user = new { user_id = Friend(2) } }));
        await friend2b.NextAsync("connected", Timeout);
        friend2b.Send(new { op = "signin" });
        await friend2b.NextAsync("signin", Timeout);
        friend2a.Send(new { op = "disconnect" });
        friend1.Send(new { op = "disconnect" });
        var offline = await watcher.NextAsync("watchlist", Timeout);
        Assert.Equal(("offline", Friend(1)), (offline.GetProperty("name").GetString(), offline.GetProperty("user_ids")[0].GetString()));
        friend2b.Send(new { op = "disconnect" });
        offline = await watcher.NextAsync("watchlist", Timeout);
        Assert.Equal(("offline", Friend(2)), (offline.GetProperty("name").GetString(), offline.GetProperty("user_ids")[0].GetString()));
    }

    [Fact]
    public async Task Webhooks_OnTwoNodes_OccupiedByTheFirstSubscriberAnywhereVacatedByTheLast_MembersOncePerUser()
    {
        using var sink = await PusherWebhookSink.StartAsync(RelayServer.Key, Timeout);
        var settings = PusherWebhookTests.Settings(sink);
        redis.AddTo(settings);
        await using var a = await RelayServer.StartAsync(settings);
        await using var b = await RelayServer.StartAsync(settings);
        // A shard that moves to the second node is told occupied again by its new owner (docs/pusher.md): counted once
        // the shards have settled, which is what this test is about.
        await ShardsSettledAsync();
        var channel = "nodes-wh-" + Guid.NewGuid().ToString("N")[..12];
        var room = "presence-nodes-wh-" + Guid.NewGuid().ToString("N")[..12];
        const string Member = """{"user_id":"carol","user_info":{}}""";
        await using var atA = await PusherSocket.ConnectAsync(a, "test.root", Timeout);
        await using var atB = await PusherSocket.ConnectAsync(b, "test.root", Timeout);

        await atA.SubscribeAsync(channel);
        await atA.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        await atA.SubscribeAsync(room, PusherSocket.Auth(RelayServer.Key, atA.SocketId + ":" + room + ":" + Member), Member);
        await atA.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        await sink.WaitForAsync("channel_occupied", channel, Timeout);
        await sink.WaitForAsync("member_added", room, Timeout);

        // The same channel and the same user on the other node: no event; then the first node leaves: none either.
        await atB.SubscribeAsync(channel);
        await atB.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        await atB.SubscribeAsync(room, PusherSocket.Auth(RelayServer.Key, atB.SocketId + ":" + room + ":" + Member), Member);
        await atB.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        await atA.SendAsync(new { @event = "pusher:unsubscribe", data = new { channel } });
        await atA.SendAsync(new { @event = "pusher:unsubscribe", data = new { channel = room } });
        await Task.Delay(TimeSpan.FromSeconds(2));

        // The last one anywhere leaves: vacated and removed, once.
        await atB.SendAsync(new { @event = "pusher:unsubscribe", data = new { channel } });
        await atB.SendAsync(new { @event = "pusher:unsubscribe", data = new { channel = room } });
        await sink.WaitForAsync("channel_vacated", channel, Timeout);
        await sink.WaitForAsync("member_removed", room, Timeout);
        await Task.Delay(TimeSpan.FromSeconds(2));

        int Told(string name, string on) => sink.Count(e => e.GetProperty("name").GetString() == name && e.GetProperty("channel").GetString() == on);
        Assert.True(Told("channel_occupied", channel) == 1, sink.Output);
        Assert.Equal(1, Told("channel_vacated", channel));
        Assert.Equal(1, Told("member_added", room));
        Assert.Equal(1, Told("member_removed", room));
        Assert.All(sink.Posts, static p => Assert.True(p.GetProperty("valid").GetBoolean()));
    }

    [Fact]
    public async Task TerminateConnections_TakenByTheOtherNode_ClosesTheUsersConnectionsOnEveryNode()
    {
        var settings = PusherServerFixture.Settings();
        redis.AddTo(settings);
        await using var a = await RelayServer.StartAsync(settings);
        await using var b = await RelayServer.StartAsync(settings);
        var user = "term-" + Guid.NewGuid().ToString("N")[..10];

        async Task<PusherSocket> SignedInAsync(RelayServer server, string id)
        {
            var socket = await PusherSocket.ConnectAsync(server, "test.root", Timeout);
            var userData = JsonSerializer.Serialize(new { id });
            await socket.SendAsync(new { @event = "pusher:signin", data = new { user_data = userData, auth = PusherSocket.Auth(RelayServer.Key, socket.SocketId + "::user::" + userData) } });
            await socket.ReceiveAsync("pusher:signin_success", Timeout);
            return socket;
        }

        // Two of the user's connections on A, one on B, and someone else's on A.
        await using var onA1 = await SignedInAsync(a, user);
        await using var onA2 = await SignedInAsync(a, user);
        await using var onB = await SignedInAsync(b, user);
        await using var other = await SignedInAsync(a, user + "-other");

        var terminated = await PusherScript.RunAsync(Timeout, "pusher-server.cjs", PusherScript.Options(b, RelayServer.Key), JsonSerializer.Serialize(new { op = "terminate", user }));
        Assert.True(terminated.GetProperty("ok").GetBoolean(), terminated.ToString());
        foreach (var socket in new[] { onA1, onA2, onB })
        {
            Assert.Equal(4009, (await socket.ReceiveAsync("pusher:error", Timeout)).GetProperty("data").GetProperty("code").GetInt32());
            Assert.Equal(4009, await socket.ClosedAsync(Timeout));
        }

        await other.SendAsync("""{"event":"pusher:ping","data":{}}""");
        await other.ReceiveAsync("pusher:pong", Timeout);
        Assert.Null(other.CloseStatus);
    }

    // Every routing and fan-out shard has an owner, two owners share each kind, and nothing changed for 4 s: longer than
    // the 3 s a fan-out process still delivers a shard it gave back, when both processes see its interest.
    private async Task ShardsSettledAsync()
    {
        await using var connection = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(RedisServer.QuickClientOptions(redis.Redis.Configuration));
        var database = connection.GetDatabase();
        var deadline = DateTime.UtcNow + Timeout;
        string? before = null;
        var stableSince = DateTime.MaxValue;
        while (true)
        {
            var routing = new string?[16];
            var fanOut = new string?[16];
            for (var shard = 0; shard < routing.Length; shard++)
            {
                routing[shard] = await database.StringGetAsync(Relay.Bus.Redis.RedisKeys.Lease(shard));
                fanOut[shard] = await database.StringGetAsync(Relay.Bus.Redis.RedisKeys.FanOutLease(shard));
            }

            var split = routing.All(static o => o is not null) && routing.Distinct().Count() == 2 && fanOut.All(static o => o is not null) && fanOut.Distinct().Count() == 2;
            var owners = string.Join(' ', routing) + " / " + string.Join(' ', fanOut);
            if (!split || owners != before)
            {
                stableSince = split ? DateTime.UtcNow : DateTime.MaxValue;
            }
            else if (DateTime.UtcNow - stableSince >= TimeSpan.FromSeconds(4))
            {
                return;
            }

            Assert.True(DateTime.UtcNow < deadline, $"shard owners never settled: {owners}");
            before = owners;
            await Task.Delay(split ? 1000 : 100);
        }
    }
}
