using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>
/// pusher-js 8 on its HTTP fallbacks (<c>enabledTransports: ['xhr_streaming']</c> or <c>['xhr_polling']</c>, Node's
/// XMLHttpRequest against <c>/pusher/app/{key}/…</c>) talking with pusher-js on a WebSocket and the server SDK: the same
/// Pusher connection as a WebSocket's, on another carrier.
/// </summary>
public sealed class PusherHttpFallbackTests(PusherServerFixture fixture) : IClassFixture<PusherServerFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly RelayServer _server = fixture.Server;

    private static string NewChannel(string prefix) => prefix + Guid.NewGuid().ToString("N")[..12];

    private PusherScript Client(string transport, object? user = null) =>
        PusherScript.Start("pusher-client.cjs", PusherScript.Options(_server, RelayServer.Key, new { user, transports = new[] { transport } }));

    /// <summary>A client on <paramref name="transport"/>, once pusher-js says it is connected over it.</summary>
    private async Task<PusherScript> ConnectedAsync(string transport, object? user = null)
    {
        var client = Client(transport, user);
        var connected = await client.NextAsync("connected", Timeout);
        Assert.Equal(transport, connected.GetProperty("transport").GetString());
        return client;
    }

    private static async Task<JsonElement> SubscribeAsync(PusherScript client, string channel)
    {
        client.Send(new { op = "subscribe", channel });
        return await client.NextAsync("subscribed", Timeout, channel);
    }

    [Theory]
    [InlineData("xhr_streaming")]
    [InlineData("xhr_polling")]
    public async Task PusherJsOverHttp_PublicEventAndPrivateClientEvents_ReachItAndAWebSocketClientBothWays(string transport)
    {
        using var http = await ConnectedAsync(transport);
        using var ws = await ConnectedAsync("ws");

        var news = NewChannel("news-");
        await SubscribeAsync(http, news);
        var triggered = await PusherScript.RunAsync(Timeout, "pusher-server.cjs", PusherScript.Options(_server, RelayServer.Key), JsonSerializer.Serialize(new { op = "trigger", channels = new[] { news }, @event = "sdk-event", data = new { x = "ünï" } }));
        Assert.True(triggered.GetProperty("ok").GetBoolean(), triggered.ToString());
        var fromSdk = await http.NextAsync("event", Timeout, news);
        Assert.Equal("sdk-event", fromSdk.GetProperty("event").GetString());
        Assert.Equal("ünï", fromSdk.GetProperty("data").GetProperty("x").GetString());

        // A private channel: channel auth signed over the HTTP session's socket id, client events both ways.
        var chat = NewChannel("private-chat-");
        await SubscribeAsync(http, chat);
        await SubscribeAsync(ws, chat);
        http.Send(new { op = "trigger", channel = chat, @event = "client-typing", data = new { who = transport } });
        Assert.True((await http.NextAsync("triggered", Timeout)).GetProperty("ok").GetBoolean());
        var atWs = await ws.NextAsync("event", Timeout, chat);
        Assert.Equal("client-typing", atWs.GetProperty("event").GetString());
        Assert.Equal(transport, atWs.GetProperty("data").GetProperty("who").GetString());

        ws.Send(new { op = "trigger", channel = chat, @event = "client-ack", data = new { who = "ws" } });
        var atHttp = await http.NextAsync("event", Timeout, chat);
        Assert.Equal("client-ack", atHttp.GetProperty("event").GetString());
        Assert.Equal("ws", atHttp.GetProperty("data").GetProperty("who").GetString());
    }

    [Theory]
    [InlineData("xhr_streaming")]
    [InlineData("xhr_polling")]
    public async Task PusherJsOverHttp_Presence_SeesMembersJoinAndLeave(string transport)
    {
        var channel = NewChannel("presence-room-");
        using var ann = await ConnectedAsync(transport, new { user_id = "ann", user_info = new { name = "Ann" } });
        var annJoined = await SubscribeAsync(ann, channel);
        Assert.Equal(1, annJoined.GetProperty("count").GetInt32());

        using (var ben = await ConnectedAsync("ws", new { user_id = "ben", user_info = new { name = "Ben" } }))
        {
            var benJoined = await SubscribeAsync(ben, channel);
            Assert.Equal(["ann", "ben"], benJoined.GetProperty("members").EnumerateArray().Select(static m => m.GetProperty("id").GetString()).Order(StringComparer.Ordinal));

            var added = await ann.NextAsync("member_added", Timeout, channel);
            Assert.Equal("ben", added.GetProperty("id").GetString());
            Assert.Equal("Ben", added.GetProperty("info").GetProperty("name").GetString());
        }

        // Ben's process is killed: his WebSocket drops and he leaves.
        var removed = await ann.NextAsync("member_removed", Timeout, channel);
        Assert.Equal("ben", removed.GetProperty("id").GetString());
    }

    [Fact]
    public async Task PusherJsWithEveryTransport_WebSocketPortUnreachable_FallsBackToXhrStreamingAndWorks()
    {
        // A port nothing listens on, as a proxy that refuses WebSockets: pusher-js tries ws, then (after its 5 s delay) HTTP.
        var closed = new TcpListener(IPAddress.Loopback, 0);
        closed.Start();
        var wsPort = ((IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();

        using var client = PusherScript.Start("pusher-client.cjs", PusherScript.Options(_server, RelayServer.Key, new { wsPort, transports = new[] { "ws", "xhr_streaming", "xhr_polling" } }));
        Assert.Equal("xhr_streaming", (await client.NextAsync("connected", Timeout)).GetProperty("transport").GetString());

        var channel = NewChannel("fallback-");
        await SubscribeAsync(client, channel);
        var triggered = await PusherScript.RunAsync(Timeout, "pusher-server.cjs", PusherScript.Options(_server, RelayServer.Key), JsonSerializer.Serialize(new { op = "trigger", channels = new[] { channel }, @event = "after-fallback", data = new { ok = true } }));
        Assert.True(triggered.GetProperty("ok").GetBoolean(), triggered.ToString());
        Assert.True((await client.NextAsync("event", Timeout, channel)).GetProperty("data").GetProperty("ok").GetBoolean());
    }
}
