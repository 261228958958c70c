using System.Security.Cryptography;
using System.Text.Json;
using System.Threading.Channels;
using Relay.Client;
using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>
/// Clients nobody on the team wrote, as Node processes: pusher-js 8 (public, private, presence, encrypted and cache
/// channels, client events, sign-in), the pusher server SDK 5 (trigger, triggerBatch, channels, users, terminate, its
/// signatures) and Laravel Echo 2, against a real node, with Relay's own WebSocket client on the other side.
/// </summary>
public sealed class PusherJsTests(PusherServerFixture fixture) : IClassFixture<PusherServerFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly RelayServer _server = fixture.Server;

    private static string NewChannel(string prefix) => prefix + Guid.NewGuid().ToString("N")[..12];

    private PusherScript Client(object? user = null, string? masterKey = null) =>
        PusherScript.Start("pusher-client.cjs", PusherScript.Options(_server, RelayServer.Key, new { user, masterKey }));

    private Task<JsonElement> Sdk(object command, string? key = null, string? masterKey = null) =>
        PusherScript.RunAsync(Timeout, "pusher-server.cjs", PusherScript.Options(_server, key ?? RelayServer.Key, new { masterKey }), JsonSerializer.Serialize(command));

    private async Task<(RelayClient Client, ChannelReader<Relay.Client.RelayMessage> Messages)> RelaySubscriberAsync(string channel)
    {
        var client = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        var received = Channel.CreateUnbounded<Relay.Client.RelayMessage>();
        await client.SubscribeAsync(channel, m => received.Writer.TryWrite(m)).WaitAsync(Timeout);
        return (client, received.Reader);
    }

    private static async Task SubscribeAsync(PusherScript client, string channel)
    {
        client.Send(new { op = "subscribe", channel });
        await client.NextAsync("subscribed", Timeout, channel);
    }

    [Fact]
    public async Task PusherJs_PublicChannel_GetsRelayPublishAndSdkEventReachesRelayWebSocket()
    {
        var channel = NewChannel("interop-");
        using var pusher = Client();
        await SubscribeAsync(pusher, channel);
        var (relay, messages) = await RelaySubscriberAsync(channel);
        await using (relay)
        {
            await relay.PublishAsync(channel, new { on = true, text = "ünï" }, name: "relay-event").WaitAsync(Timeout);
            var fromRelay = await pusher.NextAsync("event", Timeout, channel);
            Assert.Equal("relay-event", fromRelay.GetProperty("event").GetString());
            Assert.True(fromRelay.GetProperty("data").GetProperty("on").GetBoolean());
            Assert.Equal("ünï", fromRelay.GetProperty("data").GetProperty("text").GetString());

            var result = await Sdk(new { op = "trigger", channels = new[] { channel }, @event = "sdk-event", data = new { x = "y" } });
            Assert.True(result.GetProperty("ok").GetBoolean(), result.ToString());
            var fromSdk = await pusher.NextAsync("event", Timeout, channel);
            Assert.Equal("sdk-event", fromSdk.GetProperty("event").GetString());
            Assert.Equal("y", fromSdk.GetProperty("data").GetProperty("x").GetString());

            var first = await messages.ReadAsync().AsTask().WaitAsync(Timeout);
            var second = await messages.ReadAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal(("relay-event", 1L), (first.Name, first.Seq));
            Assert.Equal(("sdk-event", 2L), (second.Name, second.Seq));
            Assert.Equal("y", second.Data.GetProperty("x").GetString());
        }
    }

    [Fact]
    public async Task PusherJs_PrivateClientEvent_ReachesOthersAndRelayButNotTheSender()
    {
        var channel = NewChannel("private-chat-");
        using var alice = Client();
        using var bob = Client();
        await SubscribeAsync(alice, channel);
        await SubscribeAsync(bob, channel);
        var (relay, messages) = await RelaySubscriberAsync(channel);
        await using (relay)
        {
            alice.Send(new { op = "trigger", channel, @event = "client-typing", data = new { who = "alice" } });
            Assert.True((await alice.NextAsync("triggered", Timeout)).GetProperty("ok").GetBoolean());
            var atBob = await bob.NextAsync("event", Timeout, channel);
            Assert.Equal("client-typing", atBob.GetProperty("event").GetString());
            Assert.Equal("alice", atBob.GetProperty("data").GetProperty("who").GetString());
            var atRelay = await messages.ReadAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal("client-typing", atRelay.Name);
            Assert.Equal("alice", atRelay.Data.GetProperty("who").GetString());

            // Alice's next event is Bob's answer: her own never came back to her.
            bob.Send(new { op = "trigger", channel, @event = "client-ack", data = new { who = "bob" } });
            var atAlice = await alice.NextAsync("event", Timeout, channel);
            Assert.Equal("client-ack", atAlice.GetProperty("event").GetString());
        }
    }

    [Fact]
    public async Task PusherJs_Presence_MembersJoinAndLeave()
    {
        var channel = NewChannel("presence-room-");
        using var ann = Client(new { user_id = "ann", user_info = new { name = "Ann" } });
        ann.Send(new { op = "subscribe", channel });
        var annJoined = await ann.NextAsync("subscribed", Timeout, channel);
        Assert.Equal(1, annJoined.GetProperty("count").GetInt32());
        Assert.Equal("ann", annJoined.GetProperty("members")[0].GetProperty("id").GetString());

        using (var ben = Client(new { user_id = 42, user_info = new { name = "Ben" } }))
        {
            ben.Send(new { op = "subscribe", channel });
            var benJoined = await ben.NextAsync("subscribed", Timeout, channel);
            Assert.Equal(2, benJoined.GetProperty("count").GetInt32());
            Assert.Equal(["42", "ann"], benJoined.GetProperty("members").EnumerateArray().Select(static m => m.GetProperty("id").GetString()).Order(StringComparer.Ordinal));

            var added = await ann.NextAsync("member_added", Timeout, channel);
            Assert.Equal("42", added.GetProperty("id").GetString());
            Assert.Equal("Ben", added.GetProperty("info").GetProperty("name").GetString());

            var users = await Sdk(new { op = "users", channel });
            Assert.Equal(["42", "ann"], users.GetProperty("body").GetProperty("users").EnumerateArray().Select(static u => u.GetProperty("id").GetString()).Order(StringComparer.Ordinal));
            var info = await Sdk(new { op = "channel", channel, @params = new { info = "user_count,subscription_count" } });
            Assert.Equal(2, info.GetProperty("body").GetProperty("user_count").GetInt32());
            Assert.True(info.GetProperty("body").GetProperty("occupied").GetBoolean());
        }

        // Ben's process is killed: his connection drops and he leaves.
        var removed = await ann.NextAsync("member_removed", Timeout, channel);
        Assert.Equal("42", removed.GetProperty("id").GetString());
    }

    [Fact]
    public async Task PusherJs_EncryptedChannel_DecryptsWhileRelaySeesOnlyCiphertext()
    {
        var channel = NewChannel("private-encrypted-vault-");
        var masterKey = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        using var pusher = Client(masterKey: masterKey);
        await SubscribeAsync(pusher, channel);
        var (relay, messages) = await RelaySubscriberAsync(channel);
        await using (relay)
        {
            var result = await Sdk(new { op = "trigger", channels = new[] { channel }, @event = "secret", data = new { pin = "s3cr3t-4242" } }, masterKey: masterKey);
            Assert.True(result.GetProperty("ok").GetBoolean(), result.ToString());

            var decrypted = await pusher.NextAsync("event", Timeout, channel);
            Assert.Equal("s3cr3t-4242", decrypted.GetProperty("data").GetProperty("pin").GetString());
            var onWire = await messages.ReadAsync().AsTask().WaitAsync(Timeout);
            Assert.True(onWire.Data.TryGetProperty("ciphertext", out _));
            Assert.True(onWire.Data.TryGetProperty("nonce", out _));
            Assert.DoesNotContain("s3cr3t", onWire.Data.GetRawText(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task PusherJs_CacheChannel_ReplaysLastEventOrSaysCacheMiss()
    {
        var channel = NewChannel("cache-prices-");
        using (var early = Client())
        {
            early.Send(new { op = "subscribe", channel });
            await early.NextAsync("cache_miss", Timeout, channel);
        }

        Assert.True((await Sdk(new { op = "trigger", channels = new[] { channel }, @event = "price", data = new { v = 1 } })).GetProperty("ok").GetBoolean());
        Assert.True((await Sdk(new { op = "trigger", channels = new[] { channel }, @event = "price", data = new { v = 2 } })).GetProperty("ok").GetBoolean());

        using var late = Client();
        late.Send(new { op = "subscribe", channel });
        await late.NextAsync("subscribed", Timeout, channel);
        var replayed = await late.NextAsync("event", Timeout, channel);
        Assert.Equal(2, replayed.GetProperty("data").GetProperty("v").GetInt32());
    }

    [Fact]
    public async Task ServerSdk_TriggerBatchAndChannels_ReachSubscribersAndCount()
    {
        var a = NewChannel("batch-a-");
        var b = NewChannel("private-batch-b-");
        using var pusher = Client();
        await SubscribeAsync(pusher, a);
        await SubscribeAsync(pusher, b);

        var batch = await Sdk(new
        {
            op = "triggerBatch",
            batch = new object[]
            {
                new { channel = a, name = "one", data = "1", info = "subscription_count" },
                new { channel = b, name = "two", data = "{\"n\":2}" },
            },
        });
        Assert.True(batch.GetProperty("ok").GetBoolean(), batch.ToString());
        Assert.Equal(1, batch.GetProperty("body").GetProperty("batch")[0].GetProperty("subscription_count").GetInt32());
        var one = await pusher.NextAsync("event", Timeout, a);
        Assert.Equal(1, one.GetProperty("data").GetInt32());
        var two = await pusher.NextAsync("event", Timeout, b);
        Assert.Equal(2, two.GetProperty("data").GetProperty("n").GetInt32());

        var channels = await Sdk(new { op = "channels", @params = new { filter_by_prefix = "private-batch-", info = "subscription_count" } });
        Assert.Equal(1, channels.GetProperty("body").GetProperty("channels").GetProperty(b).GetProperty("subscription_count").GetInt32());
        Assert.False(channels.GetProperty("body").GetProperty("channels").TryGetProperty(a, out _));
        var trigger = await Sdk(new { op = "trigger", channels = new[] { a, b }, @event = "info", data = "x", @params = new { info = "subscription_count" } });
        Assert.Equal(1, trigger.GetProperty("body").GetProperty("channels").GetProperty(a).GetProperty("subscription_count").GetInt32());
        var unoccupied = await Sdk(new { op = "channel", channel = NewChannel("nobody-") });
        Assert.False(unoccupied.GetProperty("body").GetProperty("occupied").GetBoolean());
    }

    [Fact]
    public async Task ServerSdk_ChannelNameWithEscapes_SignatureCoversThePathAsSent()
    {
        // Pusher allows = @ , ; in names; the SDK escapes them in the path it signs.
        var channel = NewChannel("presence-a=b@c,d;e-");
        using var pusher = Client(new { user_id = "esc", user_info = new { } });
        await SubscribeAsync(pusher, channel);

        var info = await Sdk(new { op = "channel", channel, @params = new { info = "user_count" } });
        Assert.True(info.GetProperty("ok").GetBoolean(), info.ToString());
        Assert.Equal(1, info.GetProperty("body").GetProperty("user_count").GetInt32());
        var users = await Sdk(new { op = "users", channel });
        Assert.Equal("esc", users.GetProperty("body").GetProperty("users")[0].GetProperty("id").GetString());
    }

    [Fact]
    public async Task ServerSdk_WrongSecret_RefusedWith401AndNothingDelivered()
    {
        var channel = NewChannel("wrong-secret-");
        using var pusher = Client();
        await SubscribeAsync(pusher, channel);

        var refused = await Sdk(new { op = "trigger", channels = new[] { channel }, @event = "forged", data = "x" }, key: "test.root:not-the-secret");
        Assert.False(refused.GetProperty("ok").GetBoolean());
        Assert.Equal(401, refused.GetProperty("status").GetInt32());
        var listing = await Sdk(new { op = "channels" }, key: "test.root:not-the-secret");
        Assert.Equal(401, listing.GetProperty("status").GetInt32());

        Assert.True((await Sdk(new { op = "trigger", channels = new[] { channel }, @event = "real", data = "x" })).GetProperty("ok").GetBoolean());
        Assert.Equal("real", (await pusher.NextAsync("event", Timeout, channel)).GetProperty("event").GetString());
    }

    [Fact]
    public async Task PusherJs_SignIn_GetsUserEventsAndIsTerminated()
    {
        var user = "user-" + Guid.NewGuid().ToString("N")[..8];
        using var pusher = Client(new { user_id = user, user_info = new { } });
        await pusher.NextAsync("connected", Timeout);
        pusher.Send(new { op = "signin" });
        await pusher.NextAsync("signin", Timeout);
        await pusher.NextAsync("user-subscribed", Timeout);

        var sent = await Sdk(new { op = "sendToUser", user, @event = "user-event", data = new { hello = user } });
        Assert.True(sent.GetProperty("ok").GetBoolean(), sent.ToString());
        Assert.Equal(user, (await pusher.NextAsync("user-event", Timeout)).GetProperty("data").GetProperty("hello").GetString());

        Assert.True((await Sdk(new { op = "terminate", user })).GetProperty("ok").GetBoolean());
        var error = await pusher.NextAsync(static e => e.GetProperty("kind").GetString() == "error" && e.GetProperty("error").ValueKind == JsonValueKind.Object, Timeout);
        Assert.Equal(4009, error.GetProperty("error").GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task LaravelEcho_PublicPrivateAndPresence_Work()
    {
        var room = NewChannel("orders-");
        using var echo = PusherScript.Start("echo-client.cjs", PusherScript.Options(_server, RelayServer.Key, new { room }));
        await echo.NextAsync("subscribed", Timeout, room);
        await echo.NextAsync("subscribed", Timeout, "private-" + room);
        var here = await echo.NextAsync("here", Timeout, "presence-" + room);
        Assert.Equal("Echo", here.GetProperty("users")[0].GetProperty("name").GetString());

        Assert.True((await Sdk(new { op = "trigger", channels = new[] { room }, @event = "OrderShipped", data = new { id = 7 } })).GetProperty("ok").GetBoolean());
        Assert.True((await Sdk(new { op = "trigger", channels = new[] { "private-" + room }, @event = "App\\Events\\OrderPaid", data = new { id = 8 } })).GetProperty("ok").GetBoolean());
        Assert.Equal(7, (await echo.NextAsync("event", Timeout, room)).GetProperty("data").GetProperty("id").GetInt32());
        Assert.Equal(8, (await echo.NextAsync("event", Timeout, "private-" + room)).GetProperty("data").GetProperty("id").GetInt32());

        using var other = Client(new { user_id = "joiner", user_info = new { name = "Joiner" } });
        await SubscribeAsync(other, "presence-" + room);
        Assert.Equal("Joiner", (await echo.NextAsync("joining", Timeout, "presence-" + room)).GetProperty("user").GetProperty("name").GetString());
    }

    [Fact]
    public async Task PusherJs_ThousandsOfEvents_ArriveInOrder()
    {
        const int Batches = 300;
        const int PerBatch = 10;
        var channel = NewChannel("order-");
        using var pusher = Client();
        await SubscribeAsync(pusher, channel);

        // 3,000 events through batch_events (Pusher's 10 a request), each request answered before the next goes.
        using var http = new HttpClient();
        for (var b = 0; b < Batches; b++)
        {
            var batch = Enumerable.Range(b * PerBatch + 1, PerBatch).Select(i => new { channel, name = "n", data = $"{{\"i\":{i}}}" });
            using var response = await http.SendAsync(PusherHttp.Request(_server, RelayServer.Key, HttpMethod.Post, "/apps/test/batch_events", JsonSerializer.Serialize(new { batch }))).WaitAsync(Timeout);
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        }

        for (var i = 1; i <= Batches * PerBatch; i++)
        {
            var received = await pusher.NextAsync("event", Timeout, channel);
            Assert.Equal(i, received.GetProperty("data").GetProperty("i").GetInt32());
        }
    }
}
