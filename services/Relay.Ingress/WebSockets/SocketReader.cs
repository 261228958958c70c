using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Relay.Ingress.Connections;

namespace Relay.Ingress.WebSockets;

/// <summary>
/// A <see cref="PipeReader"/> straight over a connected socket, for the connections Relay accepts itself
/// (<see cref="RealtimeListenerFactory"/>, the MQTT listener): no pipe, no buffer segments, no scheduling. A read with
/// nothing buffered waits for input without a buffer (on Linux in Relay's own <see cref="ReadinessPoller"/>, else with
/// the runtime's zero-byte receive), then takes what the kernel has into one pooled array, grown when a frame needs
/// more; once everything is consumed the array goes back to the pool, so an idle connection holds the socket, its
/// poller slot and nothing else. Single reader; a pending read ends when data arrives, the socket closes or the
/// owner calls <see cref="Stop"/> (cancellation is not supported: a token per read would be an object per idle
/// connection).
/// </summary>
internal sealed class SocketReader : PipeReader, IValueTaskSource<ReadResult>, IReadinessTarget
{
    private const int MinimumBuffer = 4096;

    /// <summary>
    /// Bytes a connection may take from the kernel without a wait before its reader hands the rest of the burst to the
    /// thread pool. With socket completions inline, a read that finds data goes on on the socket event thread that
    /// woke it, and a client that always has more input queued (a flood) would keep that thread, and every other
    /// connection it serves, for as long as it kept sending (8 probes on 2 cores: the 4 sharing the flooder's thread
    /// got no reply in 6 s). 16 KiB is a window of 64 publishes of ~250 bytes, so a normal burst stays inline.
    /// </summary>
    internal const int InlineReadBudget = 16 * 1024;

    private static readonly Action<SocketReader> s_completeOnPool = static reader => reader._source.SetResult(true);

    private readonly BareSocket _socket;

    // The wait for input: a slot in Relay's poller, or (without one) the runtime's zero-byte receive, woken through _onReadable.
    private ReadinessPoller.Registration _registration;
    private readonly Action? _onReadable;
    // A pending read's completion; its result is made from the buffer when the reader takes it (GetResult): nothing
    // changes the buffer in between (one reader, and a wake-up acts only on a wait it takes), so the source carries no
    // ReadResult (32 B, twice: here and for a hand-off to the pool).
    private ManualResetValueTaskSourceCore<bool> _source;
    private ConfiguredValueTaskAwaitable<int>.ConfiguredValueTaskAwaiter _waiting;

    // Unconsumed bytes are _buffer[_start.._end]; null when there are none.
    private byte[]? _buffer;
    private int _start;
    private int _end;

    // The last read examined every byte it was given: the next read needs new bytes from the socket.
    private bool _examinedAll;
    private bool _ended;

    // Reads ask the kernel when their bytes arrived (StampArrivals); the last read's time is _arrivedTicks.
    private bool _stamped;
    private long _arrivedTicks;
    private bool _readerCompleted;
    private int _readPending;

    // Bytes taken from the kernel since the last wait on the socket (or the last hand-off to the pool).
    private int _readWithoutWait;

    // Who ends a read that waits on the socket: Waiting while the wait is registered; the wake-up (OnReadable) takes it
    // back to NotWaiting, Stop (or Advance seeing Stop) to Stopped. Exactly one of them completes the read.
    private const int NotWaiting = 0;
    private const int Waiting = 1;
    private const int StoppedWaiting = 2;
    private int _wait;
    private int _stopped;

    /// <param name="socket">A connected socket; reads take only what the kernel has.</param>
    /// <param name="poller">
    /// Where reads wait for input, reading with <see cref="SocketCalls"/>; null: the runtime's zero-byte receive, the
    /// socket switched to non-blocking for the runtime's reads.
    /// </param>
    public SocketReader(BareSocket socket, ReadinessPoller? poller = null)
    {
        _socket = socket;
        if (poller is null)
        {
            _socket.Socket.Blocking = false;
            _onReadable = OnReadable;
        }
        else
        {
            _registration = poller.Register(this);
        }
    }

    /// <summary>
    /// When the bytes of the last read from the socket reached the host (UTC ticks, the kernel's receive timestamp of the
    /// last of them), once <see cref="StampArrivals"/> was called; 0 when unknown.
    /// </summary>
    public long ArrivedTicks => Volatile.Read(ref _arrivedTicks);

    /// <summary>
    /// Has the kernel stamp what arrives (reads in Relay's poller only): <see cref="ArrivedTicks"/> tells when a read's
    /// bytes came, which orders what two connections sent whatever thread read them. False when not available here.
    /// </summary>
    public bool StampArrivals() => _stamped = _registration.IsTaken && SocketCalls.StampArrivals(_socket.Handle);

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_readerCompleted, this);
        if (cancellationToken.CanBeCanceled)
        {
            throw new NotSupportedException("a socket read ends when data arrives or the socket closes; close the socket to stop it");
        }

        if (Interlocked.Exchange(ref _readPending, 1) != 0)
        {
            throw new InvalidOperationException("a read is already pending");
        }

        _source.Reset();
        if (Advance(out var result))
        {
            if (_readWithoutWait <= InlineReadBudget)
            {
                _readPending = 0;
                return new ValueTask<ReadResult>(result);
            }

            // Past the budget: the reader goes on on a pool thread, and the thread that brought it here (a socket event
            // thread, with completions inline) returns to the other connections it serves.
            _readWithoutWait = 0;
            ThreadPool.UnsafeQueueUserWorkItem(s_completeOnPool, this, preferLocal: false);
        }

        return new ValueTask<ReadResult>(this, _source.Version);
    }

    public override bool TryRead(out ReadResult result)
    {
        ObjectDisposedException.ThrowIf(_readerCompleted, this);
        if (_readPending != 0)
        {
            throw new InvalidOperationException("a read is already pending");
        }

        if (_buffer is null || _examinedAll)
        {
            // Take what the kernel already has, without waiting.
            Receive();
        }

        return TryProduce(out result);
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        if (_buffer is null)
        {
            // Only an ended, empty read has no buffer: nothing to move past.
            return;
        }

        var held = _end - _start;

        var sequence = new ReadOnlySequence<byte>(_buffer, _start, held);
        var consumedCount = (int)sequence.Slice(0, consumed).Length;
        var examinedCount = (int)sequence.Slice(0, examined).Length;
        if (examinedCount < consumedCount)
        {
            throw new InvalidOperationException("examined must not come before consumed");
        }

        _start += consumedCount;
        _examinedAll = examinedCount == held;
        if (_start == _end)
        {
            // Nothing left for the reader: an idle connection holds no buffer.
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
            _start = _end = 0;
        }
    }

    /// <summary>
    /// Ends the input for the reader without touching the socket: a read waiting for data completes now as the end of
    /// the stream, and every later read too. What the client sends from now stays in the kernel until
    /// <see cref="DrainAsync"/> reads it away (shutting the socket's receive side instead left the kernel nothing to
    /// wait on: a drain could not tell the client's end from a pause).
    /// </summary>
    public void Stop()
    {
        Interlocked.Exchange(ref _stopped, 1);
        if (Interlocked.CompareExchange(ref _wait, StoppedWaiting, Waiting) == Waiting)
        {
            // Made at GetResult: what is held, as the end of the stream.
            _source.SetResult(true);
        }
    }

    /// <summary>
    /// Once the reader is done with the socket (no read pending) and the server's last bytes are sent: reads and
    /// discards what the client still sends until it closes its side, the socket fails or closes, or
    /// <paramref name="limit"/> passes. Closing a socket with unread input makes the kernel reset the connection, and a
    /// reset can destroy the last bytes sent (an MQTT 5 DISCONNECT and its reason, a client's last acknowledgements) in
    /// either kernel's buffers before the client reads them.
    /// </summary>
    public async Task DrainAsync(TimeSpan limit, TimeProvider time)
    {
        var started = time.GetTimestamp();
        var scratch = ArrayPool<byte>.Shared.Rent(MinimumBuffer);
        try
        {
            while (true)
            {
                while (true)
                {
                    var count = ReceiveNow(scratch, out var error);
                    if (error == SocketError.WouldBlock)
                    {
                        break;
                    }

                    if (error != SocketError.Success || count == 0)
                    {
                        return;
                    }
                }

                var left = limit - time.GetElapsedTime(started);
                if (left <= TimeSpan.Zero)
                {
                    return;
                }

                // The runtime's wait (its socket made now if the connection had none): once per connection, at its close.
                await _socket.Socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).AsTask().WaitAsync(left, time).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or TimeoutException)
        {
            // Reset, closed, or still sending at the limit: the socket closes as it is.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    public override void CancelPendingRead() =>
        throw new NotSupportedException("a socket read ends when data arrives or the socket closes; close the socket to stop it");

    public override void Complete(Exception? exception = null)
    {
        if (_readerCompleted)
        {
            return;
        }

        _readerCompleted = true;
        _registration.Release(_socket.Handle);
        if (_buffer is not null && _readPending == 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }
    }

    ReadResult IValueTaskSource<ReadResult>.GetResult(short token)
    {
        try
        {
            _source.GetResult(token);

            // The read was completed because there is a result (data not yet examined, or the end of the input): made now.
            var produced = TryProduce(out var result);
            Debug.Assert(produced, "a completed read has a result");
            return result;
        }
        finally
        {
            _readPending = 0;
        }
    }

    ValueTaskSourceStatus IValueTaskSource<ReadResult>.GetStatus(short token) => _source.GetStatus(token);

    void IValueTaskSource<ReadResult>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _source.OnCompleted(continuation, state, token, flags);

    /// <summary>
    /// For a reader that holds no frame while its read waits (the MQTT read loop on the bare socket, docs/benchmarks.md,
    /// MQTT): calls <paramref name="continuation"/> with <paramref name="state"/> once the pending read (the one
    /// <see cref="ReadAsync"/> returned not completed) completes, on the thread that completes it, as an await's
    /// continuation would run; <see cref="TakeCompletedRead"/> then gives its result.
    /// </summary>
    public void OnReadCompleted(Action<object?> continuation, object state) =>
        _source.OnCompleted(continuation, state, _source.Version, ValueTaskSourceOnCompletedFlags.None);

    /// <summary>The result of the read <see cref="OnReadCompleted"/> waited for, as awaiting it would have given it.</summary>
    public ReadResult TakeCompletedRead() => ((IValueTaskSource<ReadResult>)this).GetResult(_source.Version);

    void IThreadPoolWorkItem.Execute() => ((IReadinessTarget)this).OnReadable();

    /// <summary>The poller's wake-up: the socket has input, has ended, or the wake-up is spurious (the wait goes on).</summary>
    void IReadinessTarget.OnReadable()
    {
        if (Interlocked.CompareExchange(ref _wait, NotWaiting, Waiting) != Waiting)
        {
            // Stop ended the read that waited, or nothing waits.
            return;
        }

        ContinueAfterWait();
    }

    /// <summary>The runtime's wake-up, for a wait without a poller.</summary>
    private void OnReadable()
    {
        if (Interlocked.CompareExchange(ref _wait, NotWaiting, Waiting) != Waiting)
        {
            // Stop ended the read that waited: this wake-up only releases the wait.
            Observe(_waiting);
            _waiting = default;
            return;
        }

        Observe(_waiting);
        _waiting = default;
        ContinueAfterWait();
    }

    /// <summary>A wait on the socket ended (it has input, has ended, or woke for nothing): the pending read goes on from here.</summary>
    private void ContinueAfterWait()
    {
        try
        {
            // This wake-up starts a new budget.
            _readWithoutWait = 0;
            Receive();
            if (Advance(out _))
            {
                _source.SetResult(true);
            }
        }
        catch (Exception ex)
        {
            _source.SetException(ex);
        }
    }

    /// <summary>
    /// Takes input until there is a result (true), or registers a wait for the socket to become readable (false:
    /// <see cref="OnReadable"/> goes on from there). A wake-up without data (it went elsewhere, or a spurious one) waits again.
    /// </summary>
    private bool Advance(out ReadResult result)
    {
        while (!TryProduce(out result))
        {
            if (_registration.IsTaken)
            {
                // Wait for data in the poller: armed after the state says so, since the wake-up may come at once.
                Interlocked.Exchange(ref _wait, Waiting);
                if (!_registration.Arm(_socket.Handle))
                {
                    // Closed, or refused by the kernel: no wake-up will come, so this read ends the input (unless Stop just did).
                    if (Interlocked.CompareExchange(ref _wait, NotWaiting, Waiting) != Waiting)
                    {
                        return false;
                    }

                    _ended = true;
                    continue;
                }

                // A Stop that came after the check above found no wait to end: this read ends now, as Stop would.
                if (Volatile.Read(ref _stopped) != 0 && Interlocked.CompareExchange(ref _wait, StoppedWaiting, Waiting) == Waiting)
                {
                    _source.SetResult(true);
                }

                return false;
            }

            // Wait for data without a buffer: the socket's own cached receive arguments carry the wait.
            var wait = _socket.Socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false).GetAwaiter();
            if (!wait.IsCompleted)
            {
                _waiting = wait;
                Interlocked.Exchange(ref _wait, Waiting);
                wait.UnsafeOnCompleted(_onReadable!);

                // A Stop that came after the check above found no wait to end: this read ends now, as Stop would.
                if (Volatile.Read(ref _stopped) != 0 && Interlocked.CompareExchange(ref _wait, StoppedWaiting, Waiting) == Waiting)
                {
                    _source.SetResult(true);
                }

                return false;
            }

            Observe(wait);
            Receive();
        }

        return true;
    }

    /// <summary>Ends the stream when the wait failed: a closed or reset socket reads as the end of input.</summary>
    private void Observe(ConfiguredValueTaskAwaitable<int>.ConfiguredValueTaskAwaiter wait)
    {
        try
        {
            wait.GetResult();
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            _ended = true;
        }
    }

    /// <summary>Takes what the kernel has (without blocking) into the buffer; a closed peer or a failed socket ends the input.</summary>
    private void Receive()
    {
        if (_ended)
        {
            return;
        }

        if (_buffer is null)
        {
            _buffer = ArrayPool<byte>.Shared.Rent(MinimumBuffer);
            _start = _end = 0;
        }
        else if (_end == _buffer.Length)
        {
            var held = _end - _start;
            if (_start > 0 && held <= _buffer.Length / 2)
            {
                _buffer.AsSpan(_start, held).CopyTo(_buffer);
            }
            else
            {
                // A frame larger than the buffer: grow (the frame limit is the WebSocket's to enforce).
                var grown = ArrayPool<byte>.Shared.Rent(_buffer.Length * 2);
                _buffer.AsSpan(_start, held).CopyTo(grown);
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = grown;
            }

            _start = 0;
            _end = held;
        }

        int count;
        SocketError error;
        try
        {
            count = ReceiveNow(_buffer.AsSpan(_end), out error);
        }
        catch (ObjectDisposedException)
        {
            _ended = true;
            return;
        }

        if (error == SocketError.WouldBlock)
        {
            return;
        }

        if (error != SocketError.Success || count == 0)
        {
            _ended = true;
            return;
        }

        _end += count;
        _readWithoutWait += count;
        _examinedAll = false;
    }

    /// <summary>One read of what the kernel has, without waiting.</summary>
    private int ReceiveNow(Span<byte> buffer, out SocketError error)
    {
        if (!_registration.IsTaken)
        {
            return _socket.Socket.Receive(buffer, SocketFlags.None, out error);
        }

        if (!_stamped)
        {
            return SocketCalls.Receive(_socket.Handle, buffer, out error);
        }

        var count = SocketCalls.ReceiveStamped(_socket.Handle, buffer, out error, out var arrived);
        if (count > 0)
        {
            Volatile.Write(ref _arrivedTicks, arrived);
        }

        return count;
    }

    private bool TryProduce(out ReadResult result)
    {
        var held = _end - _start;
        var ended = _ended || Volatile.Read(ref _stopped) != 0;
        if (ended || (held > 0 && !_examinedAll))
        {
            var data = _buffer is null ? ReadOnlySequence<byte>.Empty : new ReadOnlySequence<byte>(_buffer, _start, held);
            result = new ReadResult(data, isCanceled: false, isCompleted: ended);
            return true;
        }

        if (_buffer is not null && held == 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
            _start = _end = 0;
        }

        result = default;
        return false;
    }
}
