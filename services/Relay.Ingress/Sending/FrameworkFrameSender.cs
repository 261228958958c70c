using System.Buffers;
using System.Net.WebSockets;

namespace Relay.Ingress.Sending;

/// <summary>
/// The sender of a connection on ASP.NET Core's WebSocket (the upgrades Relay's own transport does not take): every
/// frame goes through a <see cref="SendQueue{T}"/> bounded by the connection's budget, and one write loop sends what
/// waits, several frames as one array frame (the protocol lets the server batch), each send awaited before the next.
/// The framework's socket sends its own keep-alive pings.
/// </summary>
internal sealed class FrameworkFrameSender : IFrameSender
{
    /// <summary>A coalesced write stays below this, so one send never holds a large buffer.</summary>
    private const int CoalesceBytes = 64 * 1024;

    private readonly WebSocket _socket;
    private readonly long _budget;
    private readonly SendQueue<ReadOnlyMemory<byte>> _queue;
    private readonly Task _writer;
    private readonly bool _batchFrames;
    private volatile bool _last;
    private WebSocketCloseStatus _closeStatus = WebSocketCloseStatus.NormalClosure;
    private string? _closeReason = "disconnect";

    /// <param name="socket">The accepted WebSocket.</param>
    /// <param name="budget">Bytes the connection may have queued, not yet sent.</param>
    /// <param name="metrics">Where frames queued and sent are counted, or null.</param>
    /// <param name="batchFrames">Whether frames waiting together go as one JSON array frame (Relay's protocol allows it; Pusher's does not).</param>
    public FrameworkFrameSender(WebSocket socket, long budget, IngressMetrics? metrics, bool batchFrames = true)
    {
        _socket = socket;
        _budget = budget;
        _batchFrames = batchFrames;
        _queue = new SendQueue<ReadOnlyMemory<byte>>(static frame => frame.Length, metrics: metrics);

        // Every frame goes through the queue: the loop runs for the connection's whole life.
        _writer = WriteLoopAsync();
    }

    /// <inheritdoc />
    public bool TrySend(ReadOnlyMemory<byte> frame) => _queue.TryWrite(frame, _budget);

    /// <inheritdoc />
    public void SendLast(ReadOnlyMemory<byte> frame, bool dropQueued, WebSocketCloseStatus status = WebSocketCloseStatus.NormalClosure, string? reason = "disconnect")
    {
        _closeStatus = status;
        _closeReason = reason;
        _last = true;
        if (dropQueued)
        {
            _queue.Clear();
        }

        if (!frame.IsEmpty)
        {
            _queue.TryWrite(frame);
        }

        _queue.Complete();
    }

    /// <inheritdoc />
    public Task DrainAsync()
    {
        _queue.Complete();
        return _writer;
    }

    /// <inheritdoc />
    public void Discard() => _queue.Clear();

    /// <inheritdoc />
    public void Sweep() => _queue.TrimIfUnused();

    private static int Append(byte[] buffer, int offset, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(buffer.AsSpan(offset));
        return offset + bytes.Length;
    }

    private async Task WriteLoopAsync()
    {
        var reader = _queue;
        try
        {
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                if (!reader.TryRead(out var first))
                {
                    continue;
                }

                if (!_batchFrames || !reader.TryPeek(out var second) || first.Length + second.Length + 3 > CoalesceBytes)
                {
                    await _socket.SendAsync(first, WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None).ConfigureAwait(false);
                    continue;
                }

                // Several frames are waiting: send them as one array frame.
                var batch = ArrayPool<byte>.Shared.Rent(CoalesceBytes);
                try
                {
                    var length = Append(batch, 0, "["u8);
                    length = Append(batch, length, first.Span);
                    while (reader.TryPeek(out var next) && length + next.Length + 2 <= CoalesceBytes && reader.TryRead(out next))
                    {
                        length = Append(batch, length, ","u8);
                        length = Append(batch, length, next.Span);
                    }

                    length = Append(batch, length, "]"u8);
                    await _socket.SendAsync(batch.AsMemory(0, length), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None).ConfigureAwait(false);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(batch);
                }
            }

            if (_last && _socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                await _socket.CloseOutputAsync(_closeStatus, _closeReason, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            // The peer went away; the receive loop sees it too and cleans up.
            _queue.Complete();
            try
            {
                _socket.Abort();
            }
            catch (ObjectDisposedException)
            {
                // Already gone.
            }
        }
    }
}
