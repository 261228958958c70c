using System.Net.WebSockets;
using Relay.Ingress.WebSockets;

namespace Relay.Ingress.Sending;

/// <summary>
/// The sender of a connection on Relay's own transport (<see cref="PipeWebSocket"/> on the bare socket): a frame goes
/// straight into the socket's send buffer (<see cref="DirectSender"/>) when nothing waits ahead of it, and leaves at the
/// connection's next flush, one system call for everything written since the last. Flushes follow one policy,
/// <see cref="DeliveryBatch.RequestFlush"/>: at once, or, for a delivery made while a publisher's requests are
/// handled, when that publisher's burst ends (the rule and its bounds are on <see cref="DeliveryBatch"/>). While the
/// send buffer is full (past <see cref="DirectSender.BufferLimit"/>) frames wait in a backlog, a
/// <see cref="SendQueue{T}"/>, which a write loop (started when the first backlog forms) moves into the buffer as it
/// drains. The node's once-a-second sweep pings a quiet peer and gives the send buffers back after a quiet spell.
/// Everything under the socket's write gate.
/// </summary>
internal sealed class SocketFrameSender : IFrameSender, IFlushTarget
{
    /// <summary>What the write loop moves from the backlog before it flushes: one send never holds a large buffer.</summary>
    private const int CoalesceBytes = 64 * 1024;

    /// <summary>
    /// Sweeps in a row with nothing sent before the send buffers go back. Returning them at the first quiet sweep made
    /// a fan-out that pauses between bursts (most connections idle at the instant of the sweep) drop and re-rent every
    /// connection's buffer each second: 10,000 subscribers allocated ~250 MB in that second and stalled delivery for
    /// half a second; the shared pool keeps only a few arrays per size, so returned buffers become garbage.
    /// </summary>
    internal const int QuietSweepsBeforeTrim = 3;

    private readonly PipeWebSocket _socket;
    private readonly SendQueue<ReadOnlyMemory<byte>> _backlog;
    private readonly FlushScheduler _flushes;
    private readonly IngressMetrics? _metrics;
    private readonly long _budget;
    private readonly TimeSpan _heartbeat;

    // Under the gate.
    private bool _flushRequested;
    private bool _last;
    private WebSocketCloseStatus _closeStatus = WebSocketCloseStatus.NormalClosure;
    private string? _closeReason = "disconnect";
    private Task? _writer;
    private long _sendsAtLastSweep;
    private QuietSweeps _quiet;

    /// <param name="socket">The connection's WebSocket; its write gate guards everything here.</param>
    /// <param name="budget">Bytes the connection may hold not yet sent (send buffer, send in flight and backlog together).</param>
    /// <param name="flushes">The node's flush scheduler this connection uses.</param>
    /// <param name="heartbeat">The keep-alive interval (<see cref="PipeWebSocket.Heartbeat"/>).</param>
    /// <param name="metrics">Where frames sent and queued are counted, or null.</param>
    public SocketFrameSender(PipeWebSocket socket, long budget, FlushScheduler flushes, TimeSpan heartbeat, IngressMetrics? metrics)
    {
        _socket = socket;
        _budget = budget;
        _flushes = flushes;
        _heartbeat = heartbeat;
        _metrics = metrics;
        _backlog = new SendQueue<ReadOnlyMemory<byte>>(static frame => frame.Length, socket.WriteGate, metrics);
    }

    /// <summary>The backlog (the micro benchmarks' rig takes frames off it as the write loop would).</summary>
    internal SendQueue<ReadOnlyMemory<byte>> Backlog => _backlog;

    /// <summary>Whether a send buffer or a spare is held (tests).</summary>
    internal bool HoldsBuffers
    {
        get
        {
            lock (Gate)
            {
                return Output.HoldsBuffers;
            }
        }
    }

    private Lock Gate => _socket.WriteGate;

    private DirectSender Output => _socket.Output;

    /// <inheritdoc />
    public bool TrySend(ReadOnlyMemory<byte> frame)
    {
        lock (Gate)
        {
            // Nothing waiting ahead of it: straight into the send buffer, whose one send in flight takes what piles up
            // meanwhile. Otherwise behind the backlog, so order holds.
            var held = Output.HeldBytes;
            if (!_last && !Output.IsFull && _backlog.Count == 0 && held + frame.Length <= _budget)
            {
                _socket.WriteTextUnderGate(frame.Span);
                _metrics?.FrameSent();
                if (!_flushRequested)
                {
                    // When the bytes leave: now, or when the burst of the publisher whose request made this delivery
                    // ends (DeliveryBatch's rule: before it waits for anything, after at most MaxWork units of its work,
                    // and before MaxDelay on its input).
                    _flushRequested = true;
                    DeliveryBatch.RequestFlush(_flushes, this);
                }

                return true;
            }

            if (!_backlog.TryWrite(frame, _budget, held))
            {
                return false;
            }

            // A connection that never falls behind never runs a write loop.
            _writer ??= WriteLoopAsync();
            return true;
        }
    }

    /// <inheritdoc />
    public void SendLast(ReadOnlyMemory<byte> frame, bool dropQueued, WebSocketCloseStatus status = WebSocketCloseStatus.NormalClosure, string? reason = "disconnect")
    {
        lock (Gate)
        {
            _last = true;
            _closeStatus = status;
            _closeReason = reason;
            if (dropQueued)
            {
                _backlog.Clear();
            }

            // Behind the backlog, and through it, so the close follows once it is sent (with no frame: the close alone).
            if (frame.IsEmpty || _backlog.TryWrite(frame))
            {
                _writer ??= WriteLoopAsync();
            }

            _backlog.Complete();
        }
    }

    /// <inheritdoc />
    public Task DrainAsync()
    {
        lock (Gate)
        {
            _backlog.Complete();
            return _writer ?? Task.CompletedTask;
        }
    }

    /// <inheritdoc />
    public void Discard() => _backlog.Clear();

    /// <inheritdoc />
    public void Sweep()
    {
        _socket.Heartbeat(_heartbeat);
        lock (Gate)
        {
            // A busy connection keeps reusing its buffers; one that sent nothing for a few sweeps gives them back.
            var sends = Output.SendsStarted;
            if (sends != _sendsAtLastSweep)
            {
                _sendsAtLastSweep = sends;
                _quiet.Used();
            }

            if (_quiet.Sweep(busy: !Output.IsIdle, QuietSweepsBeforeTrim))
            {
                Output.ReleaseBuffers();
            }
        }

        _backlog.TrimIfUnused();
    }

    /// <summary>The flush <see cref="DeliveryBatch.RequestFlush"/> scheduled: sends what was written since the last.</summary>
    void IFlushTarget.Flush()
    {
        DirectSender.PendingSend? send;
        lock (Gate)
        {
            _flushRequested = false;
            send = Output.TakeSend();
        }

        // The system call outside the gate, so writers are not held back by it.
        send?.Start();
    }

    private async Task WriteLoopAsync()
    {
        // Started under the gate by the frame that formed the first backlog: go on from the thread pool, outside it.
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        try
        {
            while (await _backlog.WaitToReadAsync().ConfigureAwait(false))
            {
                // A backlog forms only while the send buffer is full: wait for room, then write what is queued in order.
                await WhenRoomAsync().ConfigureAwait(false);
                lock (Gate)
                {
                    var written = 0;
                    while (!Output.IsFull && _backlog.TryRead(out var frame))
                    {
                        _socket.WriteTextUnderGate(frame.Span);
                        written += frame.Length;
                        if (written >= CoalesceBytes)
                        {
                            Output.Flush();
                            written = 0;
                        }
                    }

                    if (written > 0)
                    {
                        Output.Flush();
                    }
                }
            }

            if (Volatile.Read(ref _last) && _socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                await _socket.CloseOutputAsync(_closeStatus, _closeReason, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or ObjectDisposedException or OperationCanceledException or IOException)
        {
            // The peer went away; the receive loop sees it too and cleans up.
            _backlog.Complete();
            _socket.Abort();
        }
    }

    /// <summary>Completes when the send buffer has room (starting its send if none is in flight).</summary>
    private Task WhenRoomAsync()
    {
        lock (Gate)
        {
            if (!Output.IsFull)
            {
                return Task.CompletedTask;
            }

            Output.Flush();
            return Output.IsFull ? Output.WhenProgressAsync() : Task.CompletedTask;
        }
    }
}
