using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;

namespace Relay.Testing;

/// <summary>
/// A WebSocket client that subscribes and then does not read: its socket gets a tiny receive buffer, so the server
/// feels the backlog after a few kilobytes. Read it (<see cref="Socket"/>) when the test wants to see what arrived.
/// </summary>
public sealed class StalledReader : IDisposable
{
    private readonly SocketsHttpHandler _handler = new()
    {
        ConnectCallback = static async (context, token) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096, NoDelay = true };
            await socket.ConnectAsync(context.DnsEndPoint, token).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        },
    };

    private StalledReader()
    {
    }

    /// <summary>The client socket.</summary>
    public ClientWebSocket Socket { get; } = new();

    /// <summary>Connects to <paramref name="realtimeUri"/> (credentials in its query) and subscribes to <paramref name="channel"/>.</summary>
    public static async Task<StalledReader> SubscribeAsync(Uri realtimeUri, string channel)
    {
        var reader = new StalledReader();
        try
        {
            using var invoker = new HttpMessageInvoker(reader._handler, disposeHandler: false);
            await reader.Socket.ConnectAsync(realtimeUri, invoker, CancellationToken.None).WaitAsync(TestSocket.DefaultTimeout).ConfigureAwait(false);
            var subscribe = Encoding.UTF8.GetBytes($$"""{"type":"subscribe","channel":"{{channel}}","ref":1}""");
            await reader.Socket.SendAsync(subscribe, WebSocketMessageType.Text, true, CancellationToken.None).WaitAsync(TestSocket.DefaultTimeout).ConfigureAwait(false);
            return reader;
        }
        catch
        {
            reader.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        Socket.Dispose();
        _handler.Dispose();
    }
}
