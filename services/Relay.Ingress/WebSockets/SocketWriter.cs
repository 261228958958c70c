using System.IO.Pipelines;
using System.Net.Sockets;
using Relay.Ingress.Sending;

namespace Relay.Ingress.WebSockets;

/// <summary>
/// A <see cref="PipeWriter"/> straight onto a connected socket, for a connection with one writer that writes and
/// flushes in turn (the MQTT write loop on Relay's own transport): the output half of <see cref="SocketReader"/>, over
/// the same <see cref="DirectSender"/> Relay's WebSockets send with. A flush starts the send and completes once every
/// byte written is with the kernel (at once, in one plain system call, unless the kernel's buffer is full), so
/// nothing is ever in flight while the writer writes: the send buffer is the writer's alone between flushes. The
/// buffer of the last send is kept for the next and given back after a quiet spell (<see cref="Sweep"/>), so an idle
/// connection holds none.
/// </summary>
internal sealed class SocketWriter : PipeWriter
{
    /// <summary>Sweeps in a row with nothing sent before the send buffers go back (as <see cref="SocketFrameSender"/>'s).</summary>
    private const int QuietSweepsBeforeTrim = SocketFrameSender.QuietSweepsBeforeTrim;

    private readonly Lock _gate;
    private readonly DirectSender _output;
    private long _sendsAtLastSweep;
    private QuietSweeps _quiet;

    /// <param name="socket">A connected, non-blocking socket (<see cref="SocketReader"/> makes it so).</param>
    /// <param name="gate">The lock the send's completion and <see cref="Sweep"/> take (shareable with the connection's queue).</param>
    /// <param name="onFailure">Called once when a send fails: the connection is gone.</param>
    public SocketWriter(Socket socket, Lock gate, Action onFailure)
    {
        _gate = gate;
        _output = new DirectSender(socket, gate, onFailure);
    }

    /// <summary>Whether a send buffer or a spare is held (tests).</summary>
    internal bool HoldsBuffers
    {
        get
        {
            lock (_gate)
            {
                return _output.HoldsBuffers;
            }
        }
    }

    public override Span<byte> GetSpan(int sizeHint = 0)
    {
        // No send is in flight between flushes (FlushAsync waits for it), so the buffer is not shared meanwhile; the
        // gate is taken only because the last send's completion may still be handing back its spare.
        lock (_gate)
        {
            return _output.GetMemory(Math.Max(sizeHint, 1)).Span;
        }
    }

    public override Memory<byte> GetMemory(int sizeHint = 0)
    {
        lock (_gate)
        {
            return _output.GetMemory(Math.Max(sizeHint, 1));
        }
    }

    public override void Advance(int bytes)
    {
        lock (_gate)
        {
            _output.Advance(bytes);
        }
    }

    /// <summary>Sends what was written; completes when the kernel has all of it (completed: the socket failed).</summary>
    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        Task progress;
        lock (_gate)
        {
            if (!_output.Flush())
            {
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: true));
            }

            if (_output.IsIdle)
            {
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: false));
            }

            progress = _output.WhenProgressAsync();
        }

        return WaitSentAsync(progress, cancellationToken);
    }

    public override void CancelPendingFlush() =>
        throw new NotSupportedException("a flush ends when the kernel has the bytes or the socket fails; close the socket to stop it");

    /// <summary>Sends what was written (without waiting for it): the socket is closed by its owner, after <see cref="WhenSentAsync"/>.</summary>
    public override void Complete(Exception? exception = null)
    {
        lock (_gate)
        {
            _output.Flush();
        }
    }

    /// <summary>Completes when everything written is with the kernel, or the socket failed.</summary>
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

    /// <summary>Once the connection has ended: the send buffers go back to the pool.</summary>
    public void ReleaseBuffers()
    {
        lock (_gate)
        {
            _output.ReleaseBuffers();
        }
    }

    private async ValueTask<FlushResult> WaitSentAsync(Task progress, CancellationToken cancellationToken)
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

                if (_output.IsIdle)
                {
                    return new FlushResult(isCanceled: false, isCompleted: false);
                }

                _output.Flush();
                progress = _output.WhenProgressAsync();
            }
        }
    }
}
