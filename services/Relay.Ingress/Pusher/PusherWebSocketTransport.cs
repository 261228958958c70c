using System.Buffers;
using System.Net.WebSockets;

namespace Relay.Ingress.Pusher;

/// <summary>A Pusher connection's frames on a WebSocket (Relay's own transport or ASP.NET Core's): one text message is one frame.</summary>
internal sealed class PusherWebSocketTransport(WebSocket socket) : IPusherTransport
{
    public async Task ReceiveAsync(PusherConnection connection)
    {
        byte[]? buffer = null;
        try
        {
            while (!connection.IsClosing)
            {
                // A zero-byte read first: an idle connection holds no buffer.
                var first = await socket.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None).ConfigureAwait(false);
                if (first.MessageType == WebSocketMessageType.Close)
                {
                    break;
                }

                if (first.EndOfMessage)
                {
                    // An empty message: nothing to parse.
                    await connection.ReceivedAsync(ReadOnlyMemory<byte>.Empty).ConfigureAwait(false);
                    continue;
                }

                buffer = ArrayPool<byte>.Shared.Rent(connection.MaxFrameBytes);
                var length = 0;
                var tooLarge = false;
                ValueWebSocketReceiveResult result;
                do
                {
                    if (length == buffer.Length)
                    {
                        // Over the limit: the rest of the message is read and dropped; the connection goes on.
                        tooLarge = true;
                        length = 0;
                    }

                    result = await socket.ReceiveAsync(buffer.AsMemory(length), CancellationToken.None).ConfigureAwait(false);
                    length += result.Count;
                }
                while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    break;
                }

                await connection.ReceivedAsync(buffer.AsMemory(0, length), tooLarge).ConfigureAwait(false);
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = null;
            }
        }
        catch (Exception ex) when (ex is WebSocketException or IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            connection.ReceiveEnded(ex.Message);
        }
        finally
        {
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    public void Abort()
    {
        try
        {
            socket.Abort();
        }
        catch (ObjectDisposedException)
        {
            // Gone already.
        }
    }
}
