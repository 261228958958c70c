using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>
/// The apps' Pusher webhooks, received on loopback by <c>webhook-receiver.cjs</c>, which checks every POST with the
/// <c>pusher</c> SDK's <c>webhook().isValid()</c> as an app's server would.
/// </summary>
public sealed class PusherWebhookTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    internal static Dictionary<string, string?> Settings(PusherWebhookSink sink)
    {
        var settings = PusherServerFixture.Settings();
        settings["Relay:Pusher:Apps:test:WebhookKey"] = "test.root";
        settings["Relay:Pusher:Apps:test:Webhooks:0:Url"] = sink.Url;
        return settings;
    }

    [Fact]
    public async Task Webhooks_PusherJsOnPresenceAndCacheChannels_EveryEventSignedAsTheSdkChecks()
    {
        using var sink = await PusherWebhookSink.StartAsync(RelayServer.Key, Timeout);
        await using var server = await RelayServer.StartAsync(Settings(sink));
        var room = "presence-wh-" + Guid.NewGuid().ToString("N")[..12];
        var cache = "cache-wh-" + Guid.NewGuid().ToString("N")[..12];

        using var alice = PusherScript.Start("pusher-client.cjs", PusherScript.Options(server, RelayServer.Key, new { user = new { user_id = "alice", user_info = new { name = "Alice" } } }));
        var socketId = (await alice.NextAsync("connected", Timeout)).GetProperty("socketId").GetString();
        alice.Send(new { op = "subscribe", channel = room });
        await alice.NextAsync("subscribed", Timeout, room);
        await sink.WaitForAsync("channel_occupied", room, Timeout);
        Assert.Equal("alice", (await sink.WaitForAsync("member_added", room, Timeout)).GetProperty("user_id").GetString());

        alice.Send(new { op = "trigger", channel = room, @event = "client-hello", data = new { x = 1 } });
        var clientEvent = await sink.WaitForAsync("client_event", room, Timeout);
        Assert.Equal("client-hello", clientEvent.GetProperty("event").GetString());
        Assert.Equal("{\"x\":1}", clientEvent.GetProperty("data").GetString());
        Assert.Equal(socketId, clientEvent.GetProperty("socket_id").GetString());
        Assert.Equal("alice", clientEvent.GetProperty("user_id").GetString());

        alice.Send(new { op = "subscribe", channel = cache });
        await alice.NextAsync("cache_miss", Timeout, cache);
        await sink.WaitForAsync("cache_miss", cache, Timeout);

        // The three come from different places (presence from routing, occupancy from interest): in any order, once each.
        alice.Send(new { op = "disconnect" });
        Assert.Equal("alice", (await sink.WaitForAsync("member_removed", room, Timeout)).GetProperty("user_id").GetString());
        await sink.WaitForAsync("channel_vacated", room, Timeout);
        await sink.WaitForAsync("channel_vacated", cache, Timeout);
        await Task.Delay(TimeSpan.FromSeconds(1));
        foreach (var (name, on) in new[] { ("member_removed", room), ("channel_vacated", room), ("channel_vacated", cache), ("member_added", room), ("channel_occupied", room) })
        {
            Assert.True(sink.Count(e => e.GetProperty("name").GetString() == name && e.GetProperty("channel").GetString() == on) == 1, $"{name} {on} not told once:\n{sink.Output}");
        }

        Assert.Equal(1, sink.Count(e => e.GetProperty("name").GetString() == "channel_occupied" && e.GetProperty("channel").GetString() == cache));
        Assert.All(sink.Posts, post =>
        {
            Assert.True(post.GetProperty("valid").GetBoolean(), "the pusher SDK refused a webhook's signature:\n" + sink.Output);
            Assert.Equal("test.root", post.GetProperty("key").GetString());
            Assert.Equal("application/json", post.GetProperty("contentType").GetString());
            Assert.InRange(post.GetProperty("time_ms").GetInt64(), DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeMilliseconds(), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        });
    }

    [Fact]
    public async Task Webhooks_ReceiverFailsTwice_SameBatchRetriedWithBackoffThenTaken()
    {
        using var sink = await PusherWebhookSink.StartAsync(RelayServer.Key, Timeout, fail: 2);
        await using var server = await RelayServer.StartAsync(Settings(sink));
        var channel = "retried-" + Guid.NewGuid().ToString("N")[..12];
        await using var socket = await PusherSocket.ConnectAsync(server, "test.root", Timeout);

        var started = DateTime.UtcNow;
        await socket.SubscribeAsync(channel);
        await socket.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        var (post, _) = await sink.NextAsync("channel_occupied", channel, Timeout);

        // Refused twice (500), taken on the third try after waiting 1 s then 2 s; the same events each time.
        Assert.Equal(3, post.GetProperty("n").GetInt32());
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromSeconds(2.5), $"retried after {DateTime.UtcNow - started}, sooner than the 1 s + 2 s backoff");
        var posts = sink.Posts;
        Assert.Equal([500, 500, 200], posts.Select(static p => p.GetProperty("status").GetInt32()));
        Assert.All(posts, p => Assert.Equal(post.GetProperty("events").GetRawText(), p.GetProperty("events").GetRawText()));
        Assert.All(posts, p => Assert.True(p.GetProperty("valid").GetBoolean()));
    }

    [Fact]
    public async Task Webhooks_HundredsOfChannelsAtOnce_EachOccupiedAndVacatedOnceInBatches()
    {
        const int Connections = 50;
        const int ChannelsEach = 4;
        using var sink = await PusherWebhookSink.StartAsync(RelayServer.Key, Timeout, fail: 1);
        await using var server = await RelayServer.StartAsync(Settings(sink));
        var prefix = "burst-" + Guid.NewGuid().ToString("N")[..8] + "-";
        var sockets = await Task.WhenAll(Enumerable.Range(0, Connections).Select(_ => PusherSocket.ConnectAsync(server, "test.root", Timeout)));
        await Task.WhenAll(sockets.Select(async (socket, i) =>
        {
            for (var c = 0; c < ChannelsEach; c++)
            {
                await socket.SubscribeAsync(prefix + ((i * ChannelsEach) + c));
                await socket.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
            }
        }));

        var occupied = new HashSet<string>();
        while (occupied.Count < Connections * ChannelsEach)
        {
            var (_, e) = await sink.NextAsync(e => e.GetProperty("name").GetString() == "channel_occupied", Timeout);
            Assert.True(occupied.Add(e.GetProperty("channel").GetString()!), "occupied twice: " + e.GetRawText());
        }

        foreach (var socket in sockets)
        {
            await socket.DisposeAsync();
        }

        var vacated = new HashSet<string>();
        while (vacated.Count < Connections * ChannelsEach)
        {
            var (_, e) = await sink.NextAsync(e => e.GetProperty("name").GetString() == "channel_vacated", Timeout);
            Assert.True(vacated.Add(e.GetProperty("channel").GetString()!), "vacated twice: " + e.GetRawText());
        }

        Assert.Equal(occupied, vacated);

        // The first POST was refused; meanwhile the rest queued up and went in batches of up to 100.
        var taken = sink.Posts.Where(static p => p.GetProperty("status").GetInt32() == 200).ToList();
        Assert.Contains(taken, static p => p.GetProperty("events").GetArrayLength() > 1);
        Assert.All(taken, static p => Assert.InRange(p.GetProperty("events").GetArrayLength(), 1, 100));
        Assert.All(sink.Posts, static p => Assert.True(p.GetProperty("valid").GetBoolean()));
    }
}
