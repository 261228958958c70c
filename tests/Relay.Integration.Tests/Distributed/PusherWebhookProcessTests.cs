using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// Pusher's occupancy and member webhooks in the split deployment: the ingress nodes do not serve fan-out, so only the
/// fan-out service sees a channel's first subscriber anywhere and its last one leaving, and the presence events routing
/// sequences. It tells them (with the app's key from the auth service's key directory), to a loopback receiver that
/// checks each POST's <c>X-Pusher-Key</c> and <c>X-Pusher-Signature</c>. The SDK's own check of the signature runs in
/// <c>PusherWebhookTests</c>; Pusher clients here are raw WebSocket frames of protocol 7.
/// </summary>
public sealed class PusherWebhookProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task SplitFanOutService_TellsOccupancyAndMembers_OnceEach()
    {
        using var receiver = WebhookReceiver.Start();
        await using var cluster = await RelayCluster.StartAsync(new Dictionary<string, string>
        {
            ["Relay__Pusher__Apps__test__WebhookKey"] = "test.root",
            ["Relay__Pusher__Apps__test__Webhooks__0__Url"] = receiver.Url,
        });
        cluster.Output = output.WriteLine;
        var room = "presence-split-" + Guid.NewGuid().ToString("N")[..10];
        var lobby = "lobby-split-" + Guid.NewGuid().ToString("N")[..10];

        // Alice on ingress A in both channels, Bob on ingress B in the presence channel.
        await using var alice = await PusherSocket.ConnectAsync(cluster.IngressA.Port);
        await alice.SubscribeAsync(lobby);
        await alice.SubscribePresenceAsync(room, "alice");
        await using (var bob = await PusherSocket.ConnectAsync(cluster.IngressB.Port))
        {
            await bob.SubscribePresenceAsync(room, "bob");
            await receiver.WaitForAsync("channel_occupied", lobby);
            await receiver.WaitForAsync("channel_occupied", room);
            await receiver.WaitForAsync("member_added", room, "alice");
            await receiver.WaitForAsync("member_added", room, "bob");
        }

        // Bob's node still has Alice in the room: the room stays occupied, only Bob leaves it.
        await receiver.WaitForAsync("member_removed", room, "bob");
        await alice.DisposeAsync();
        await receiver.WaitForAsync("member_removed", room, "alice");
        await receiver.WaitForAsync("channel_vacated", room);
        await receiver.WaitForAsync("channel_vacated", lobby);

        await Task.Delay(TimeSpan.FromSeconds(2));
        foreach (var (name, channel, user) in new[]
        {
            ("channel_occupied", lobby, (string?)null), ("channel_vacated", lobby, null), ("channel_occupied", room, null),
            ("channel_vacated", room, null), ("member_added", room, "alice"), ("member_added", room, "bob"),
            ("member_removed", room, "alice"), ("member_removed", room, "bob"),
        })
        {
            Assert.True(receiver.Count(name, channel, user) == 1, $"{name} {channel} {user} told {receiver.Count(name, channel, user)} times:\n{receiver.Dump()}");
        }

        Assert.Empty(receiver.Refusals);
    }

    // One Pusher protocol 7 connection: connection_established, then subscriptions confirmed by subscription_succeeded.
    private sealed class PusherSocket : IAsyncDisposable
    {
        private readonly ClientWebSocket _socket = new();
        private string _socketId = "";

        public static async Task<PusherSocket> ConnectAsync(int port)
        {
            var socket = new PusherSocket();
            await socket._socket.ConnectAsync(new Uri($"ws://127.0.0.1:{port}/app/test.root?protocol=7&client=relay-test&version=8.4.0"), CancellationToken.None).WaitAsync(Wait);
            var established = await socket.NextAsync("pusher:connection_established");
            socket._socketId = JsonDocument.Parse(established.GetProperty("data").GetString()!).RootElement.GetProperty("socket_id").GetString()!;
            return socket;
        }

        public Task SubscribeAsync(string channel) => SendAndConfirmAsync(new { channel });

        // Signed as an app's auth endpoint signs: HMAC-SHA256 over socket_id:channel:channel_data with the key's secret.
        public Task SubscribePresenceAsync(string channel, string user)
        {
            var channelData = JsonSerializer.Serialize(new { user_id = user, user_info = new { name = user } });
            var signature = Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(RelayServer.KeySecret), Encoding.UTF8.GetBytes($"{_socketId}:{channel}:{channelData}")));
            return SendAndConfirmAsync(new { channel, auth = $"test.root:{signature}", channel_data = channelData });
        }

        public async ValueTask DisposeAsync()
        {
            if (_socket.State == WebSocketState.Open)
            {
                using var closing = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                try
                {
                    await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, closing.Token);
                }
                catch (Exception e) when (e is WebSocketException or OperationCanceledException)
                {
                    // Gone already.
                }
            }

            _socket.Dispose();
        }

        private async Task SendAndConfirmAsync(object data)
        {
            var frame = JsonSerializer.SerializeToUtf8Bytes(new { @event = "pusher:subscribe", data });
            await _socket.SendAsync(frame, WebSocketMessageType.Text, true, CancellationToken.None).WaitAsync(Wait);
            await NextAsync("pusher_internal:subscription_succeeded");
        }

        private async Task<JsonElement> NextAsync(string name)
        {
            using var cancel = new CancellationTokenSource(Wait);
            var buffer = new byte[64 * 1024];
            while (true)
            {
                var length = 0;
                ValueWebSocketReceiveResult result;
                do
                {
                    result = await _socket.ReceiveAsync(buffer.AsMemory(length), cancel.Token);
                    length += result.Count;
                }
                while (!result.EndOfMessage);

                Assert.True(result.MessageType != WebSocketMessageType.Close, $"closed while waiting for {name}: {_socket.CloseStatus} {_socket.CloseStatusDescription}");
                var frame = JsonDocument.Parse(buffer.AsMemory(0, length)).RootElement.Clone();
                var @event = frame.GetProperty("event").GetString();
                Assert.True(@event != "pusher:error", $"pusher:error while waiting for {name}: {frame.GetRawText()}");
                if (@event == name)
                {
                    return frame;
                }
            }
        }
    }

    // A loopback HTTP receiver of Pusher webhooks: checks X-Pusher-Key and X-Pusher-Signature (HMAC-SHA256 of the body
    // with the key's secret) and keeps every event of an accepted POST.
    private sealed class WebhookReceiver : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly List<JsonElement> _events = [];
        private readonly Channel<JsonElement> _arrivals = Channel.CreateUnbounded<JsonElement>();
        private readonly List<JsonElement> _seen = [];

        private WebhookReceiver(int port)
        {
            Url = $"http://127.0.0.1:{port}/pusher/webhooks/";
            _listener.Prefixes.Add(Url);
            _listener.Start();
            _ = Task.Run(ServeAsync);
        }

        public string Url { get; }

        public List<string> Refusals { get; } = [];

        public static WebhookReceiver Start() => new(RelayCluster.FreePort());

        public int Count(string name, string channel, string? user)
        {
            lock (_events)
            {
                return _events.Count(e => Matches(e, name, channel, user));
            }
        }

        public string Dump()
        {
            lock (_events)
            {
                return string.Join("\n", _events.Select(e => e.GetRawText()));
            }
        }

        public async Task WaitForAsync(string name, string channel, string? user = null)
        {
            using var cancel = new CancellationTokenSource(Wait);
            while (true)
            {
                lock (_seen)
                {
                    if (_seen.Any(e => Matches(e, name, channel, user)))
                    {
                        return;
                    }
                }

                try
                {
                    var arrived = await _arrivals.Reader.ReadAsync(cancel.Token);
                    lock (_seen)
                    {
                        _seen.Add(arrived);
                    }
                }
                catch (OperationCanceledException)
                {
                    Assert.Fail($"no {name} for {channel} {user} within {Wait.TotalSeconds} s; received:\n{Dump()}\nrefused: {string.Join("; ", Refusals)}");
                }
            }
        }

        public void Dispose() => _listener.Close();

        private static bool Matches(JsonElement e, string name, string channel, string? user) =>
            e.GetProperty("name").GetString() == name && e.GetProperty("channel").GetString() == channel
            && (user is null || (e.TryGetProperty("user_id", out var id) && id.GetString() == user));

        private async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }

                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                var bytes = body.ToArray();
                var expected = Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(RelayServer.KeySecret), bytes));
                if (context.Request.Headers["X-Pusher-Key"] != "test.root" || context.Request.Headers["X-Pusher-Signature"] != expected)
                {
                    lock (Refusals)
                    {
                        Refusals.Add($"key {context.Request.Headers["X-Pusher-Key"]}, signature {context.Request.Headers["X-Pusher-Signature"]}: {Encoding.UTF8.GetString(bytes)}");
                    }

                    context.Response.StatusCode = 401;
                    context.Response.Close();
                    continue;
                }

                foreach (var e in JsonDocument.Parse(bytes).RootElement.GetProperty("events").EnumerateArray())
                {
                    var copy = e.Clone();
                    lock (_events)
                    {
                        _events.Add(copy);
                    }

                    _arrivals.Writer.TryWrite(copy);
                }

                context.Response.StatusCode = 200;
                context.Response.Close();
            }
        }
    }
}
