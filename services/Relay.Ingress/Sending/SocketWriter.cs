using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Relay.Ingress.Connections;
using Relay.Ingress.WebSockets;

namespace Relay.Ingress.Sending;

/// <summary>
/// A <see cref="PipeWriter"/> straight onto a connected socket, for a connection with one writer (the MQTT write loop
/// on Relay's own transport): the output half of <see cref="SocketReader"/>, over the same <see cref="DirectSender"/>
/// Relay's WebSockets send with. The writer writes into a staging buffer of its own; a flush moves what it wrote into
/// the send buffer and asks the node's <see cref="FlushScheduler"/> for the send, as a WebSocket's deliveries do, so
/// the bytes that reach a connection before its turn leave in the same system call (sending at each flush made a
/// fan-out 2.4–3.4x slower than Kestrel's transport: one system call per delivery). A flush waits only while the send
/// buffer is full (<see cref="DirectSender.BufferLimit"/>). The staging buffer goes back at every flush, and the send
/// buffers after a quiet spell (<see cref="Sweep"/>), so an idle connection holds none.
/// </summary>
internal sealed class SocketWriter : PipeWriter, IFlushTarget
{
    /// <summary>Sweeps in a row with nothing sent before the send buffers go back (as <see cref="SocketFrameSender"/>'s).</summary>
    private const int QuietSweepsBeforeTrim = SocketFrameSender.QuietSweepsBeforeTrim;

    private const int MinimumStaging = 4096;

    private readonly Lock _gate;
    private readonly DirectSender _output;
    private readonly FlushScheduler _flushes;

    // The writer's own: what it wrote since its last flush.
    private byte[]? _staged;
    private int _stagedLength;

    // Under the gate.
    private bool _flushRequested;

    // Whether the writer holds bytes, or items it is about to write, that are not in the send buffer yet (from the
    // owner's MarkHolding until the next flush): a frame written straight to the send buffer then would overtake them.
    private bool _holding;
    private long _sendsAtLastSweep;
    private QuietSweeps _quiet;

    /// <param name="socket">A connected, non-blocking socket (<see cref="SocketReader"/> makes it so).</param>
    /// <param name="gate">The lock the send buffer is used under (shareable with the connection's queue).</param>
    /// <param name="flushes">The node's flush scheduler this connection uses.</param>
    /// <param name="onFailure">Called once when a send fails: the connection is gone.</param>
    public SocketWriter(BareSocket socket, Lock gate, FlushScheduler flushes, IAbortable onFailure)
    {
        _gate = gate;
        _flushes = flushes;
        _output = new DirectSender(socket, gate, onFailure);
    }

    /// <summary>Whether a send buffer or a spare is held (tests).</summary>
    internal bool HoldsBuffers
    {
        get
        {
            lock (_gate)
            {
                return _output.HoldsBuffers || _staged is not null;
            }
        }
    }

    public override Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

    public override Memory<byte> GetMemory(int sizeHint = 0)
    {
        var size = Math.Max(sizeHint, 1);
        if (_staged is null || _staged.Length - _stagedLength < size)
        {
            var grown = ArrayPool<byte>.Shared.Rent(Math.Max(MinimumStaging, Math.Max(_stagedLength + size, (_staged?.Length ?? 0) * 2)));
            if (_staged is not null)
            {
                _staged.AsSpan(0, _stagedLength).CopyTo(grown);
                ArrayPool<byte>.Shared.Return(_staged);
            }

            _staged = grown;
        }

        return _staged.AsMemory(_stagedLength);
    }

    public override void Advance(int bytes) => _stagedLength += bytes;

    /// <summary>
    /// Under the gate: the writer has taken an item it will write before its next flush (its owner's queue is empty
    /// now, yet the item is not in the send buffer): <see cref="TryWriteNow"/> refuses until that flush.
    /// </summary>
    public void MarkHolding() => _holding = true;

    /// <summary>
    /// Under the gate, for a frame that may skip the owner's queue and write loop (its caller checked that nothing is
    /// queued ahead of it): copies <paramref name="frame"/> into the send buffer, with <paramref name="firstByteBits"/>
    /// set in its first byte, and asks for its send, when nothing the writer holds would be overtaken, the send buffer
    /// is not full, the socket has not failed, and the connection's bytes not yet with the kernel stay within
    /// <paramref name="budget"/>. False: the caller queues it as usual.
    /// </summary>
    public bool TryWriteNow(ReadOnlySpan<byte> frame, byte firstByteBits, long budget)
    {
        if (_holding || _stagedLength > 0 || _output.Failed || _output.IsFull || _output.HeldBytes + frame.Length > budget)
        {
            return false;
        }

        var span = _output.GetSpan(frame.Length);
        frame.CopyTo(span);
        span[0] |= firstByteBits;
        _output.Advance(frame.Length);
        RequestSend();
        return true;
    }

    /// <summary>
    /// Moves what was written into the send buffer and asks for its send; waits only while the send buffer is full.
    /// Completed: the socket failed.
    /// </summary>
    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        Task progress;
        lock (_gate)
        {
            Stage();
            if (_output.Failed)
            {
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: true));
            }

            if (!_output.IsFull)
            {
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: false));
            }

            _output.Flush();
            progress = _output.WhenProgressAsync();
        }

        return WaitRoomAsync(progress, cancellationToken);
    }

    public override void CancelPendingFlush() =>
        throw new NotSupportedException("a flush ends when the send buffer has room or the socket fails; close the socket to stop it");

    /// <summary>Sends what was written: the socket is closed by its owner, after <see cref="WhenSentAsync"/>.</summary>
    public override void Complete(Exception? exception = null)
    {
        lock (_gate)
        {
            Stage();
            _output.Flush();
        }
    }

    /// <summary>Completes when everything flushed is with the kernel, or the socket failed.</summary>
    public async Task WhenSentAsync()
    {
        while (true)
        {
            Task progress;
            lock (_gate)
            {
                if (_output.IsIdle)
                {
                    return;
                }

                _output.Flush();
                progress = _output.WhenProgressAsync();
            }

            await progress.ConfigureAwait(false);
        }
    }

    /// <summary>The flush <see cref="FlushAsync"/> asked the scheduler for: sends what was flushed since the last.</summary>
    void IFlushTarget.Flush()
    {
        DirectSender.PendingSend? send;
        lock (_gate)
        {
            _flushRequested = false;
            send = _output.TakeSend();
        }

        // The system call outside the gate, so the writer is not held back by it.
        send?.Start();
    }

    /// <summary>The node's once-a-second sweep: a writer that sent nothing for a few sweeps gives its send buffers back.</summary>
    public void Sweep()
    {
        lock (_gate)
        {
            var sends = _output.SendsStarted;
            if (sends != _sendsAtLastSweep)
            {
                _sendsAtLastSweep = sends;
                _quiet.Used();
            }

            if (_quiet.Sweep(busy: !_output.IsIdle, QuietSweepsBeforeTrim))
            {
                _output.ReleaseBuffers();
            }
        }
    }

    /// <summary>Once the connection has ended (the writer is done): the send buffers go back to the pool.</summary>
    public void ReleaseBuffers()
    {
        lock (_gate)
        {
            _output.ReleaseBuffers();
        }
    }

    /// <summary>Under the gate: asks once per write burst for the send of what the send buffer holds.</summary>
    private void RequestSend()
    {
        if (!_flushRequested)
        {
            // When the bytes leave: the rule every sender follows (DeliveryBatch.RequestFlush).
            _flushRequested = true;
            DeliveryBatch.RequestFlush(_flushes, this);
        }
    }

    /// <summary>
    /// Under the gate: what the writer wrote goes into the send buffer, and the staging buffer back to the pool; the
    /// writer holds nothing back from then.
    /// </summary>
    private void Stage()
    {
        _holding = false;
        if (_staged is null)
        {
            return;
        }

        if (_stagedLength > 0 && !_output.Failed)
        {
            _staged.AsSpan(0, _stagedLength).CopyTo(_output.GetSpan(_stagedLength));
            _output.Advance(_stagedLength);
            RequestSend();
        }

        ArrayPool<byte>.Shared.Return(_staged);
        _staged = null;
        _stagedLength = 0;
    }

    private async ValueTask<FlushResult> WaitRoomAsync(Task progress, CancellationToken cancellationToken)
    {
        while (true)
        {
            await progress.WaitAsync(cancellationToken).ConfigureAwait(false);
            lock (_gate)
            {
                if (_output.Failed)
                {
                    return new FlushResult(isCanceled: false, isCompleted: true);
                }

                if (!_output.IsFull)
                {
                    return new FlushResult(isCanceled: false, isCompleted: false);
                }

                _output.Flush();
                progress = _output.WhenProgressAsync();
            }
        }
    }
}
