using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>A raw Pusher protocol client on a WebSocket: frames in and out as text, for what pusher-js would never send.</summary>
internal sealed class PusherSocket : IAsyncDisposable
{
    private readonly ClientWebSocket _socket = new();

    public string SocketId { get; private set; } = string.Empty;

    public JsonElement Established { get; private set; }

    public WebSocketCloseStatus? CloseStatus => _socket.CloseStatus;

    public static Uri UriFor(RelayServer server, string keyName, string? query = "protocol=7") =>
        new($"ws://{server.BaseAddress.Authority}/app/{Uri.EscapeDataString(keyName)}{(query is null ? string.Empty : "?" + query)}");

    /// <summary>Connects and reads <c>pusher:connection_established</c>.</summary>
    public static async Task<PusherSocket> ConnectAsync(RelayServer server, string keyName, TimeSpan timeout)
    {
        var socket = new PusherSocket();
        await socket._socket.ConnectAsync(UriFor(server, keyName), CancellationToken.None).WaitAsync(timeout);
        var first = await socket.ReceiveAsync(timeout);
        Assert.Equal("pusher:connection_established", first.GetProperty("event").GetString());
        socket.Established = JsonDocument.Parse(first.GetProperty("data").GetString()!).RootElement;
        socket.SocketId = socket.Established.GetProperty("socket_id").GetString()!;
        return socket;
    }

    /// <summary>Connects without reading anything.</summary>
    public static async Task<PusherSocket> OpenAsync(Uri uri, TimeSpan timeout)
    {
        var socket = new PusherSocket();
        await socket._socket.ConnectAsync(uri, CancellationToken.None).WaitAsync(timeout);
        return socket;
    }

    /// <summary>The <c>auth</c> of a private or presence subscription, signed with <paramref name="key"/> (<c>APP.KEY:SECRET</c>).</summary>
    public static string Auth(string key, string text)
    {
        var colon = key.IndexOf(':', StringComparison.Ordinal);
        var hash = HMACSHA256.HashData(Encoding.UTF8.GetBytes(key[(colon + 1)..]), Encoding.UTF8.GetBytes(text));
        return key[..colon] + ":" + Convert.ToHexStringLower(hash);
    }

    public Task SendAsync(string text) => _socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None);

    public Task SendAsync(object frame) => SendAsync(JsonSerializer.Serialize(frame));

    public Task SendBytesAsync(byte[] bytes, WebSocketMessageType type = WebSocketMessageType.Text) => _socket.SendAsync(bytes, type, true, CancellationToken.None);

    public Task SubscribeAsync(string channel, string? auth = null, string? channelData = null) =>
        SendAsync(new { @event = "pusher:subscribe", data = new { channel, auth, channel_data = channelData } });

    /// <summary>The next frame; a close fails with <see cref="WebSocketException"/> naming the close status.</summary>
    public async Task<JsonElement> ReceiveAsync(TimeSpan timeout)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        using var cancel = new CancellationTokenSource(timeout);
        while (true)
        {
            var result = await _socket.ReceiveAsync(chunk, cancel.Token);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                throw new WebSocketException($"closed {(int?)result.CloseStatus} {result.CloseStatusDescription}");
            }

            buffer.Write(chunk, 0, result.Count);
            if (result.EndOfMessage)
            {
                return JsonDocument.Parse(buffer.ToArray()).RootElement;
            }
        }
    }

    /// <summary>The next frame with event <paramref name="eventName"/>, skipping others.</summary>
    public async Task<JsonElement> ReceiveAsync(string eventName, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        while (true)
        {
            var frame = await ReceiveAsync(timeout).WaitAsync(cancel.Token);
            if (frame.GetProperty("event").GetString() == eventName)
            {
                return frame;
            }
        }
    }

    /// <summary>Reads frames until the server closes; the close status.</summary>
    public async Task<int> ClosedAsync(TimeSpan timeout)
    {
        var chunk = new byte[16 * 1024];
        using var cancel = new CancellationTokenSource(timeout);
        while (true)
        {
            var result = await _socket.ReceiveAsync(chunk, cancel.Token);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return (int)result.CloseStatus!.Value;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _socket.Abort();
        _socket.Dispose();
        await Task.CompletedTask;
    }
}
