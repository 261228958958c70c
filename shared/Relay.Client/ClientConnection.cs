using System.Buffers;
using System.Net.WebSockets;

namespace Relay.Client;

/// <summary>One WebSocket connection: serialized sends, whole-message receives, and when it last heard from the server.</summary>
internal sealed class ClientConnection(ClientWebSocket socket) : IDisposable
{
    /// <summary>A server frame larger than this is treated as a broken connection rather than buffered without bound.</summary>
    private const int MaxInboundFrameBytes = 16 * 1024 * 1024;

    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private long _lastReceived = Environment.TickCount64;

    public string ConnectionId { get; set; } = string.Empty;

    public string? ClientId { get; set; }

    public TimeSpan Heartbeat { get; set; }

    public TimeSpan SinceLastReceived => TimeSpan.FromMilliseconds(Environment.TickCount64 - Interlocked.Read(ref _lastReceived));

    public string? CloseDescription => socket.CloseStatus is { } status ? $"{(int)status} {socket.CloseStatusDescription}".TrimEnd() : null;

    public async ValueTask SendAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await socket.SendAsync(frame, WebSocketMessageType.Text, endOfMessage: true, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>Reads one whole message into <paramref name="into"/>; <c>false</c> when the server closed the connection.</summary>
    public async ValueTask<bool> ReceiveAsync(ArrayBufferWriter<byte> into, CancellationToken cancellationToken)
    {
        into.ResetWrittenCount();
        while (true)
        {
            var result = await socket.ReceiveAsync(into.GetMemory(4096), cancellationToken).ConfigureAwait(false);
            Interlocked.Exchange(ref _lastReceived, Environment.TickCount64);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                return false;
            }

            into.Advance(result.Count);
            if (result.EndOfMessage)
            {
                return true;
            }

            if (into.WrittenCount > MaxInboundFrameBytes)
            {
                throw new WebSocketException(WebSocketError.Faulted, $"a server frame exceeded {MaxInboundFrameBytes} bytes");
            }
        }
    }

    /// <summary>Sends a close frame (without waiting long for the server's), then aborts whatever is left.</summary>
    public async Task CloseAsync(TimeSpan timeout)
    {
        if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
            {
                // Closing is best effort: the abort below ends the connection either way.
            }
        }
    }

    public void Abort() => socket.Abort();

    public void Dispose()
    {
        socket.Dispose();
        _sendLock.Dispose();
    }
}
