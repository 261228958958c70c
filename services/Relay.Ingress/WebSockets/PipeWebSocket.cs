using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;
using System.Text.Unicode;
using Relay.Ingress.Connections;

namespace Relay.Ingress.WebSockets;

/// <summary>
/// The server side of RFC 6455 on a bare socket: what <see cref="WebSocket"/> promises, with less held per connection
/// than the framework's socket behind a full HTTP request. Frames are read from a <see cref="PipeReader"/> over the
/// socket (a zero-byte receive waits without a buffer) and written into the socket's <see cref="DirectSender"/> under
/// one write gate. Control frames are answered inline; keep-alive pings come from the node's once-a-second loop through
/// <see cref="Heartbeat"/>. Data frames are written by the connection's sender (<c>Sending/SocketFrameSender</c>)
/// through <see cref="WriteTextUnderGate"/>; <c>SendAsync</c> is the framework-style send, complete once the bytes are
/// with the kernel.
/// </summary>
internal sealed class PipeWebSocket : WebSocket
{
    private const int MaxControlPayload = 125;

    /// <summary>
    /// Control frames one receive answers before it lets its caller run again: a stream of pings would otherwise keep
    /// one receive (and its thread) busy for as long as it lasts, and the caller could not send what it owes others.
    /// </summary>
    private const int ControlFramesPerReceive = 64;

    private readonly PipeReader _input;
    private readonly DirectSender _output;
    private readonly IAbortable _abort;
    private readonly Lock _writeGate = new();
    private readonly TimeProvider _time;

    // The close frame of a protocol error, written once the connection has finished (FinishAsync).
    private byte[]? _failureClose;
    private WebSocketState _state = WebSocketState.Open;
    private WebSocketCloseStatus? _closeStatus;
    private string? _closeDescription;

    // The data frame being read: payload bytes left, its mask and where in the mask we are.
    private long _remaining;
    private uint _mask;
    private int _maskOffset;
    private bool _final;
    private bool _inMessage;
    private WebSocketMessageType _messageType;

    // Sending: whether a fragmented message is open (its next frames are continuations).
    private bool _sendingMessage;
    private long _lastReceivedTicks;

    // When the last keep-alive ping was written into the send buffer (0: never). A ping written after the peer's
    // last frame is outstanding; one that could not be written is not.
    private long _pingSentTicks;

    /// <param name="input">The bytes the client sends (Relay's own transport: a <see cref="SocketReader"/> over <paramref name="socket"/>).</param>
    /// <param name="socket">The connection's socket: frames are sent to it directly.</param>
    /// <param name="subProtocol">The negotiated subprotocol.</param>
    /// <param name="abort">Ends the connection at once.</param>
    /// <param name="time">The clock for heartbeats.</param>
    public PipeWebSocket(PipeReader input, BareSocket socket, string? subProtocol, IAbortable abort, TimeProvider time)
    {
        _input = input;
        _output = new DirectSender(socket, _writeGate, abort);
        SubProtocol = subProtocol;
        _abort = abort;
        _time = time;
        _lastReceivedTicks = time.GetTimestamp();
    }

    public override WebSocketCloseStatus? CloseStatus => _closeStatus;

    public override string? CloseStatusDescription => _closeDescription;

    public override WebSocketState State => _state;

    public override string? SubProtocol { get; }

    /// <summary>
    /// Pings a quiet peer, and aborts one that has not answered a ping within an interval (a dead TCP peer never
    /// says so). Any frame from the peer, pong or data, shows it alive. A ping counts as sent only once it is in the
    /// socket's send buffer: while that is full (a reader behind on a busy channel) or its gate is busy, none is, nothing
    /// is outstanding, and the next sweep tries again; a reader that catches up is pinged then. A peer that never
    /// reads at all is not pinged: its send budget (<c>SendQueueBytes</c>) cuts it, and the kernel gives up on a dead one.
    /// </summary>
    public void Heartbeat(TimeSpan interval)
    {
        if (_state != WebSocketState.Open)
        {
            return;
        }

        var lastReceived = Interlocked.Read(ref _lastReceivedTicks);
        var quiet = _time.GetElapsedTime(lastReceived);
        if (_pingSentTicks > lastReceived)
        {
            if (quiet >= interval * 2 && _time.GetElapsedTime(_pingSentTicks) >= interval)
            {
                Abort();
            }
        }
        else if (quiet >= interval)
        {
            // Read before writing: a pong, stamped when it arrives, is then always later than its ping.
            var now = _time.GetTimestamp();
            if (TrySendPing())
            {
                _pingSentTicks = now;
            }
        }
    }

    /// <summary>Pings and pongs received so far: a receive handles them itself, without returning.</summary>
    internal long ControlFramesReceived { get; private set; }

    public override async ValueTask<ValueWebSocketReceiveResult> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var input = _input;
        var controlFrames = 0;
        while (true)
        {
            var read = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (read.IsCanceled)
            {
                throw new OperationCanceledException("the receive was cancelled");
            }

            var data = read.Buffer;
            if (_remaining == 0)
            {
                if (!TryReadHeader(data, out var header))
                {
                    ThrowIfEnded(read, data);
                    input.AdvanceTo(data.Start, data.End);
                    continue;
                }

                Interlocked.Exchange(ref _lastReceivedTicks, _time.GetTimestamp());
                if (header.Opcode >= 0x8)
                {
                    // Control frames arrive whole (at most 125 bytes); wait until all of it is here.
                    if (data.Length < header.HeaderLength + header.Length)
                    {
                        ThrowIfEnded(read, data);
                        input.AdvanceTo(data.Start, data.End);
                        continue;
                    }

                    var payload = new byte[header.Length];
                    data.Slice(header.HeaderLength, header.Length).CopyTo(payload);
                    Unmask(payload, header.Mask, 0);
                    input.AdvanceTo(data.GetPosition(header.HeaderLength + header.Length));
                    if (header.Opcode == 0x8)
                    {
                        return ReceivedClose(payload);
                    }

                    ControlFramesReceived++;
                    if (header.Opcode == 0x9)
                    {
                        await SendControlAsync(0xA, payload).ConfigureAwait(false);
                    }

                    if (++controlFrames % ControlFramesPerReceive == 0)
                    {
                        // Let the caller see a receive that is not complete (and the thread pool run others).
                        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
                    }

                    continue;
                }

                StartDataFrame(header);
                input.AdvanceTo(data.GetPosition(header.HeaderLength));
                if (header.Length == 0 || buffer.IsEmpty)
                {
                    return Result(0);
                }

                continue;
            }

            if (buffer.IsEmpty)
            {
                // A zero-byte receive in the middle of a frame: report once payload is waiting.
                if (data.IsEmpty)
                {
                    ThrowIfEnded(read, data);
                    input.AdvanceTo(data.Start, data.End);
                    continue;
                }

                input.AdvanceTo(data.Start);
                return new ValueWebSocketReceiveResult(0, _messageType, endOfMessage: false);
            }

            var count = (int)Math.Min(Math.Min(data.Length, _remaining), buffer.Length);
            if (count == 0)
            {
                ThrowIfEnded(read, data);
                input.AdvanceTo(data.Start, data.End);
                continue;
            }

            var target = buffer.Span[..count];
            data.Slice(0, count).CopyTo(target);
            _maskOffset = Unmask(target, _mask, _maskOffset);
            input.AdvanceTo(data.GetPosition(count));
            _remaining -= count;
            return Result(count);
        }
    }

    public override async Task<WebSocketReceiveResult> ReceiveAsync(ArraySegment<byte> buffer, CancellationToken cancellationToken)
    {
        var result = await ReceiveAsync(buffer.AsMemory(), cancellationToken).ConfigureAwait(false);
        return result.MessageType == WebSocketMessageType.Close
            ? new WebSocketReceiveResult(0, WebSocketMessageType.Close, true, _closeStatus, _closeDescription)
            : new WebSocketReceiveResult(result.Count, result.MessageType, result.EndOfMessage);
    }

    public override async ValueTask SendAsync(ReadOnlyMemory<byte> buffer, WebSocketMessageType messageType, bool endOfMessage, CancellationToken cancellationToken)
    {
        if (_state is not (WebSocketState.Open or WebSocketState.CloseReceived))
        {
            throw new WebSocketException(WebSocketError.InvalidState, $"cannot send in state {_state}");
        }

        var opcode = _sendingMessage ? 0x0 : messageType == WebSocketMessageType.Binary ? 0x2 : 0x1;
        _sendingMessage = !endOfMessage;
        await SendFrameAsync(opcode, endOfMessage, buffer, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Waits until the client has sent something, without consuming or examining it: pass the result to
    /// <see cref="ReleaseInput"/>, then <see cref="ReceiveAsync(Memory{byte}, CancellationToken)"/> finds it at once.
    /// Awaiting the reader directly costs nothing per waiting connection, unlike an async receive.
    /// </summary>
    internal ValueTask<ReadResult> WaitForInputAsync() => _input.ReadAsync();

    internal void ReleaseInput(ReadResult read) => _input.AdvanceTo(read.Buffer.Start);

    /// <summary>
    /// Takes one whole message from what <see cref="WaitForInputAsync"/> returned, when it is all there in a single
    /// unfragmented data frame of at most <paramref name="maxBytes"/> and no message is being read: its payload,
    /// unmasked, into a pooled array the caller returns, in one step instead of a receive for the header and another
    /// for the payload. False, with nothing consumed, otherwise (a control frame, a fragment, a frame not yet whole):
    /// then call <see cref="ReleaseInput"/> and receive as usual. <paramref name="now"/> is when the input arrived
    /// (<see cref="TimeProvider.GetTimestamp"/>), the peer's "last heard" for the heartbeat.
    /// </summary>
    internal bool TryTakeMessage(ReadResult read, int maxBytes, long now, out byte[] payload, out int length, out bool text)
    {
        payload = [];
        length = 0;
        text = false;
        var data = read.Buffer;
        if (_remaining != 0 || _inMessage || !TryReadHeader(data, out var header)
            || header.Opcode is not (0x1 or 0x2) || !header.Final || header.Length > maxBytes
            || data.Length < header.HeaderLength + header.Length)
        {
            return false;
        }

        Volatile.Write(ref _lastReceivedTicks, now);
        text = header.Opcode == 0x1;
        length = (int)header.Length;
        payload = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
        var target = payload.AsSpan(0, length);
        data.Slice(header.HeaderLength, length).CopyTo(target);
        Unmask(target, header.Mask, 0);
        _input.AdvanceTo(data.GetPosition(header.HeaderLength + length));
        return true;
    }

    /// <summary>The gate every write to the socket goes through; hold it to call the <c>UnderGate</c> methods.</summary>
    internal Lock WriteGate => _writeGate;

    /// <summary>Where frames go: the socket's send buffer, under <see cref="WriteGate"/>.</summary>
    internal DirectSender Output => _output;

    /// <summary>Writes bytes as they are (the upgrade response) and sends them ahead of any frame.</summary>
    internal void SendRaw(ReadOnlySpan<byte> bytes)
    {
        lock (_writeGate)
        {
            bytes.CopyTo(_output.GetSpan(bytes.Length));
            _output.Advance(bytes.Length);
            _output.Flush();
        }
    }

    /// <summary>Writes one whole text frame into the send buffer (under <see cref="WriteGate"/>, unless the buffer is full); the caller flushes.</summary>
    internal void WriteTextUnderGate(ReadOnlySpan<byte> payload) => WriteFrame(0x1, final: true, payload);

    /// <summary>Writes one frame and waits until the kernel has taken it (the framework-style send).</summary>
    private async ValueTask SendFrameAsync(int opcode, bool final, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var written = false;
        while (true)
        {
            Task wait;
            lock (_writeGate)
            {
                if (_output.Failed)
                {
                    throw new WebSocketException(WebSocketError.ConnectionClosedPrematurely, "the connection closed while sending");
                }

                if (!written && !_output.IsFull)
                {
                    WriteFrame(opcode, final, payload.Span);
                    _output.Flush();
                    written = true;
                }

                // Like a framework send, complete once the bytes are with the kernel.
                if (written && _output.IsIdle)
                {
                    return;
                }

                wait = _output.WhenProgressAsync();
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public override Task SendAsync(ArraySegment<byte> buffer, WebSocketMessageType messageType, bool endOfMessage, CancellationToken cancellationToken) =>
        SendAsync(buffer.AsMemory(), messageType, endOfMessage, cancellationToken).AsTask();

    public override async Task CloseOutputAsync(WebSocketCloseStatus closeStatus, string? statusDescription, CancellationToken cancellationToken)
    {
        if (_state is WebSocketState.CloseSent or WebSocketState.Closed or WebSocketState.Aborted)
        {
            return;
        }

        var payload = ClosePayload(closeStatus, statusDescription);
        _state = _state == WebSocketState.CloseReceived ? WebSocketState.Closed : WebSocketState.CloseSent;
        await SendControlAsync(0x8, payload, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A close frame's payload: the status, then as much of the reason as fits a control frame.</summary>
    private static byte[] ClosePayload(WebSocketCloseStatus status, string? reason)
    {
        var description = Encoding.UTF8.GetBytes(reason ?? string.Empty);
        var payload = new byte[2 + Math.Min(description.Length, MaxControlPayload - 2)];
        BinaryPrimitives.WriteUInt16BigEndian(payload, (ushort)status);
        description.AsSpan(0, payload.Length - 2).CopyTo(payload.AsSpan(2));
        return payload;
    }

    public override Task CloseAsync(WebSocketCloseStatus closeStatus, string? statusDescription, CancellationToken cancellationToken) =>
        CloseOutputAsync(closeStatus, statusDescription, cancellationToken);

    public override void Abort()
    {
        if (_state != WebSocketState.Closed)
        {
            _state = WebSocketState.Aborted;
        }

        _abort.Abort();
    }

    public override void Dispose()
    {
        if (_state is not (WebSocketState.Closed or WebSocketState.Aborted))
        {
            _state = WebSocketState.Closed;
        }
    }

    private static void ThrowIfEnded(ReadResult read, ReadOnlySequence<byte> data)
    {
        if (read.IsCompleted)
        {
            throw new WebSocketException(WebSocketError.ConnectionClosedPrematurely, data.IsEmpty ? "the peer closed the connection" : "the peer closed the connection inside a frame");
        }
    }

    private ValueWebSocketReceiveResult Result(int count)
    {
        var end = _remaining == 0 && _final;
        if (end)
        {
            _inMessage = false;
        }

        return new ValueWebSocketReceiveResult(count, _messageType, end);
    }

    private ValueWebSocketReceiveResult ReceivedClose(byte[] payload)
    {
        if (payload.Length == 1)
        {
            throw Fail("a close frame's payload must be empty or start with a two-byte status");
        }

        if (payload.Length >= 2)
        {
            var code = BinaryPrimitives.ReadUInt16BigEndian(payload);
            if (!MayBeSentByPeer(code))
            {
                throw Fail($"close code {code} is not one a peer may send");
            }

            if (!Utf8.IsValid(payload.AsSpan(2)))
            {
                throw Fail("the close reason is not valid UTF-8", WebSocketCloseStatus.InvalidPayloadData);
            }
        }

        _closeStatus = payload.Length >= 2 ? (WebSocketCloseStatus)BinaryPrimitives.ReadUInt16BigEndian(payload) : WebSocketCloseStatus.Empty;
        _closeDescription = payload.Length > 2 ? Encoding.UTF8.GetString(payload, 2, payload.Length - 2) : null;
        _state = _state == WebSocketState.CloseSent ? WebSocketState.Closed : WebSocketState.CloseReceived;
        return new ValueWebSocketReceiveResult(0, WebSocketMessageType.Close, endOfMessage: true);
    }

    private void StartDataFrame(in FrameHeader header)
    {
        if (header.Opcode == 0x0)
        {
            if (!_inMessage)
            {
                throw Fail("a continuation frame arrived with no message to continue");
            }
        }
        else
        {
            if (_inMessage)
            {
                throw Fail("a new message started before the previous one ended");
            }

            _messageType = header.Opcode == 0x1 ? WebSocketMessageType.Text : WebSocketMessageType.Binary;
            _inMessage = true;
        }

        _remaining = header.Length;
        _mask = header.Mask;
        _maskOffset = 0;
        _final = header.Final;
    }

    private bool TryReadHeader(ReadOnlySequence<byte> data, out FrameHeader header)
    {
        header = default;
        Span<byte> bytes = stackalloc byte[14];
        var available = (int)Math.Min(data.Length, bytes.Length);
        if (available < 2)
        {
            return false;
        }

        data.Slice(0, available).CopyTo(bytes);
        var first = bytes[0];
        var second = bytes[1];
        var opcode = first & 0x0F;
        if ((first & 0x70) != 0)
        {
            throw Fail("reserved bits are set but no extension was agreed");
        }

        if (opcode is not (0x0 or 0x1 or 0x2 or 0x8 or 0x9 or 0xA))
        {
            throw Fail($"unknown opcode {opcode}");
        }

        if ((second & 0x80) == 0)
        {
            throw Fail("client frames must be masked");
        }

        var final = (first & 0x80) != 0;
        long length = second & 0x7F;
        var offset = 2;
        if (length == 126)
        {
            if (available < 4)
            {
                return false;
            }

            length = BinaryPrimitives.ReadUInt16BigEndian(bytes[2..]);
            offset = 4;
        }
        else if (length == 127)
        {
            if (available < 10)
            {
                return false;
            }

            length = (long)BinaryPrimitives.ReadUInt64BigEndian(bytes[2..]);
            if (length < 0)
            {
                throw Fail("frame length out of range");
            }

            offset = 10;
        }

        if (opcode >= 0x8 && (!final || length > MaxControlPayload))
        {
            throw Fail("control frames must be whole and at most 125 bytes");
        }

        if (available < offset + 4)
        {
            return false;
        }

        header = new FrameHeader(opcode, final, length, BinaryPrimitives.ReadUInt32LittleEndian(bytes[offset..]), offset + 4);
        return true;
    }

    /// <summary>
    /// Close codes a peer may put in a close frame (RFC 6455 §7.4.1, §7.4.2): the defined ones but 1004 (reserved), 1005,
    /// 1006 and 1015 (never sent: they stand for "no code", "dropped" and "TLS failed"), IANA's 1012-1014, and the
    /// ranges for libraries (3000-3999) and applications (4000-4999). The rest of 1000-2999 is unassigned.
    /// </summary>
    private static bool MayBeSentByPeer(int code) => code is (>= 1000 and <= 1003) or (>= 1007 and <= 1014) or (>= 3000 and <= 4999);

    /// <summary>
    /// Fails the connection for a text message that is not UTF-8 (RFC 6455 §8.1: close 1007), as ASP.NET Core's
    /// WebSocket does; the caller checks whole messages and throws what this returns.
    /// </summary>
    internal WebSocketException FailInvalidText() => Fail("a text message is not valid UTF-8", WebSocketCloseStatus.InvalidPayloadData);

    private WebSocketException Fail(string message, WebSocketCloseStatus status = WebSocketCloseStatus.ProtocolError)
    {
        // A protocol error ends the connection: say why (1002, or 1007 for text that is not UTF-8), then drop it. The
        // close frame is written when the connection has finished (FinishAsync), behind everything queued before it:
        // written now it could go out between two queued messages, and no data frame may follow a close (RFC 6455 §5.5.1).
        if (_state is not (WebSocketState.CloseSent or WebSocketState.Closed or WebSocketState.Aborted))
        {
            _failureClose = ClosePayload(status, message);
        }

        _state = WebSocketState.Aborted;
        return new WebSocketException(WebSocketError.Faulted, message);
    }

    /// <summary>
    /// Called once the connection has ended, before its socket is closed: writes the close frame of a protocol error,
    /// then waits, at most <paramref name="timeout"/>, until every byte written has been handed to the kernel. Closing
    /// the socket at once lost whatever a send in flight still held (a close frame among it).
    /// </summary>
    internal async Task FinishAsync(TimeSpan timeout)
    {
        var started = _time.GetTimestamp();
        while (true)
        {
            Task progress;
            lock (_writeGate)
            {
                if (_failureClose is { } close)
                {
                    _failureClose = null;
                    WriteFrame(0x8, final: true, close);
                }

                if (_output.IsIdle)
                {
                    return;
                }

                _output.Flush();
                progress = _output.WhenProgressAsync();
            }

            var left = timeout - _time.GetElapsedTime(started);
            if (left <= TimeSpan.Zero)
            {
                return;
            }

            try
            {
                await progress.WaitAsync(left, _time).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                return;
            }
        }
    }

    /// <summary>
    /// XORs <paramref name="payload"/> with the frame's mask, whose byte <paramref name="offset"/> applies to its first
    /// byte; returns the offset for the bytes that follow. 32, then 8 bytes at a time (one byte at a time it was 3.5% of
    /// the server's CPU in <c>publish-ws-1</c>, docs/benchmarks.md).
    /// </summary>
    internal static int Unmask(Span<byte> payload, uint mask, int offset)
    {
        // The key as it falls on the payload's first byte, in memory order (the mask was read little-endian).
        var key = BitOperations.RotateRight(mask, 8 * offset);
        var i = 0;
        if (BitConverter.IsLittleEndian)
        {
            var wide = ((ulong)key << 32) | key;
            ref var start = ref MemoryMarshal.GetReference(payload);
            if (Vector256.IsHardwareAccelerated && payload.Length >= Vector256<byte>.Count)
            {
                var keys = Vector256.Create(wide).AsByte();
                for (; i <= payload.Length - Vector256<byte>.Count; i += Vector256<byte>.Count)
                {
                    (Vector256.LoadUnsafe(ref start, (nuint)i) ^ keys).StoreUnsafe(ref start, (nuint)i);
                }
            }

            for (; i <= payload.Length - sizeof(ulong); i += sizeof(ulong))
            {
                ref var block = ref Unsafe.Add(ref start, i);
                Unsafe.WriteUnaligned(ref block, Unsafe.ReadUnaligned<ulong>(ref block) ^ wide);
            }
        }

        // The rest (i is a multiple of 4 here, so the key lines up again with its first byte).
        for (; i < payload.Length; i++)
        {
            payload[i] ^= (byte)(key >> (8 * (i & 3)));
        }

        return (offset + payload.Length) & 3;
    }

    private ValueTask SendControlAsync(int opcode, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default) =>
        SendFrameAsync(opcode, final: true, payload, cancellationToken);

    /// <summary>
    /// Writes a keep-alive ping if the socket's send buffer takes it now: its gate free (the node's sweep never waits on
    /// a connection) and the buffer not full. False when it did not, or the socket has failed.
    /// </summary>
    private bool TrySendPing()
    {
        if (!_writeGate.TryEnter())
        {
            return false;
        }

        try
        {
            if (_output.IsFull || _output.Failed)
            {
                return false;
            }

            WriteFrame(0x9, final: true, ReadOnlySpan<byte>.Empty);
            return _output.Flush();
        }
        finally
        {
            _writeGate.Exit();
        }
    }

    private void WriteFrame(int opcode, bool final, ReadOnlySpan<byte> payload)
    {
        if (!_output.Failed)
        {
            var frame = _output.GetSpan(10 + payload.Length);
            var length = WriteHeader(frame, opcode, final, payload.Length);
            payload.CopyTo(frame[length..]);
            _output.Advance(length + payload.Length);
        }
    }

    private static int WriteHeader(Span<byte> header, int opcode, bool final, int payloadLength)
    {
        header[0] = (byte)((final ? 0x80 : 0) | opcode);
        if (payloadLength < 126)
        {
            header[1] = (byte)payloadLength;
            return 2;
        }

        if (payloadLength <= ushort.MaxValue)
        {
            header[1] = 126;
            BinaryPrimitives.WriteUInt16BigEndian(header[2..], (ushort)payloadLength);
            return 4;
        }

        header[1] = 127;
        BinaryPrimitives.WriteUInt64BigEndian(header[2..], (ulong)payloadLength);
        return 10;
    }

    private readonly record struct FrameHeader(int Opcode, bool Final, long Length, uint Mask, int HeaderLength);
}
