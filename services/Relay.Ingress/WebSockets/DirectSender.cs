using System.Buffers;
using System.Net.Sockets;
using Relay.Ingress.Connections;

namespace Relay.Ingress.WebSockets;

/// <summary>
/// Sends a connection's outgoing bytes straight to its socket (the output half of Relay's own transport, as Kestrel's
/// <c>SocketSender</c> is of its): writers append to one pooled buffer under the connection's write gate, and one
/// send at a time takes everything appended so far, so the bytes that pile up while a send is in flight leave in the
/// next single system call. A quiet connection holds no buffer once its owner gives them back
/// (<see cref="ReleaseBuffers"/>; when is the owner's policy). Past <see cref="BufferLimit"/> the buffer counts as
/// full and callers hold frames back.
/// On a non-blocking socket (Relay's own transport) a send is first tried as one plain system call, and only what
/// the kernel cannot take at once is sent asynchronously: a connection whose sends always fit never allocates the
/// socket's asynchronous send arguments.
/// </summary>
internal sealed class DirectSender(BareSocket socket, Lock gate, IAbortable onFailure)
{
    // Decided once: a send without waiting needs SocketCalls (Linux), or a socket Relay's transport made non-blocking (see
    // SocketReader); a plain send on a blocking socket could block the caller.
    private readonly bool _tryAtOnce = SocketCalls.IsSupported || !socket.Socket.Blocking;

    /// <summary>Bytes a connection may have waiting behind an in-flight send before it is considered full.</summary>
    public const int BufferLimit = 256 * 1024;

    private const int MinimumBuffer = 4096;

    private const int SpareMaximum = 64 * 1024;

    private byte[]? _buffer;
    private byte[]? _spare;
    private int _length;
    private int _inFlight;
    private bool _sending;
    private bool _failed;
    private bool _socketHoldsBuffer;
    private TaskCompletionSource? _progress;

    /// <summary>Whether writers should hold back (under the gate).</summary>
    public bool IsFull => _length >= BufferLimit && !_failed;

    /// <summary>Whether the socket failed: nothing more is sent (under the gate).</summary>
    public bool Failed => _failed;

    /// <summary>Whether a send buffer or a spare is held (under the gate; tests).</summary>
    internal bool HoldsBuffers => _buffer is not null || _spare is not null;

    /// <summary>Bytes not yet with the kernel (under the gate): buffered, and the send in flight (whole until it ends).</summary>
    public long HeldBytes => _length + _inFlight;

    /// <summary>Sends started so far (under the gate): the owner's quiet sweeps compare it from one sweep to the next.</summary>
    public long SendsStarted { get; private set; }

    /// <summary>Nothing buffered and nothing in flight (under the gate).</summary>
    public bool IsIdle => (_length == 0 && !_sending) || _failed;

    /// <summary>Room for <paramref name="size"/> more bytes (under the gate); call <see cref="Advance"/> after writing.</summary>
    public Span<byte> GetSpan(int size)
    {
        if (_buffer is null && _spare is not null && _spare.Length >= size)
        {
            // The buffer of the last send: a busy connection keeps two buffers instead of renting one per send.
            _buffer = _spare;
            _spare = null;
        }

        if (_buffer is null || _buffer.Length - _length < size)
        {
            var grown = ArrayPool<byte>.Shared.Rent(Math.Max(MinimumBuffer, Math.Max(size + _length, (_buffer?.Length ?? 0) * 2)));
            if (_buffer is not null)
            {
                _buffer.AsSpan(0, _length).CopyTo(grown);
                ArrayPool<byte>.Shared.Return(_buffer);
            }

            _buffer = grown;
        }

        return _buffer.AsSpan(_length, size);
    }

    public void Advance(int count) => _length += count;

    /// <summary>Starts sending what is buffered unless a send is already in flight (under the gate); false once the socket failed.</summary>
    public bool Flush()
    {
        if (TakeSend() is { } send)
        {
            send.Start();
        }

        return !_failed;
    }

    /// <summary>
    /// Takes what is buffered for a send the caller starts after leaving the gate (so the system call does not hold
    /// writers back); null when a send is already in flight, nothing is buffered, or the socket failed.
    /// </summary>
    public PendingSend? TakeSend()
    {
        if (_failed || _sending || _length == 0)
        {
            return null;
        }

        var send = new PendingSend(this, _buffer!, _length);
        _inFlight = _length;
        _buffer = null;
        _length = 0;
        _sending = true;
        SendsStarted++;
        return send;
    }

    /// <summary>
    /// Gives pooled buffers back if nothing is buffered or in flight (under the gate). When is the owner's choice: a
    /// connection between two bursts looks idle too, and a buffer given back then is garbage the next burst replaces.
    /// </summary>
    public void ReleaseBuffers()
    {
        if (!_sending && _length == 0)
        {
            if (_socketHoldsBuffer && !_failed)
            {
                // The socket's cached send arguments keep the last buffer sent alive; an empty send lets it go,
                // so a quiet connection pins no buffer at all. Nothing else is sending (checked above).
                _socketHoldsBuffer = false;
                _ = ReleaseSocketBufferAsync(socket);
            }

            if (_buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = null;
            }

            if (_spare is not null)
            {
                ArrayPool<byte>.Shared.Return(_spare);
                _spare = null;
            }
        }
    }

    /// <summary>A task that completes at the next step of the send loop (under the gate): a send done, or the socket failed.</summary>
    public Task WhenProgressAsync()
    {
        if (_failed || (!_sending && _length == 0))
        {
            return Task.CompletedTask;
        }

        _progress ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return _progress.Task;
    }

    private static async Task ReleaseSocketBufferAsync(BareSocket socket)
    {
        try
        {
            await socket.Socket.SendAsync(ReadOnlyMemory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
        {
            // The connection is gone; nothing is held any more either way.
        }
    }

    /// <summary>One non-blocking system call: the bytes the kernel took (possibly none), or -1 when the socket failed.</summary>
    private int SendAtOnce(byte[] buffer, int length)
    {
        var sent = SocketCalls.IsSupported
            ? SocketCalls.Send(socket.Handle, buffer.AsSpan(0, length), out var error)
            : socket.Socket.Send(buffer, 0, length, SocketFlags.None, out error);
        return error switch
        {
            SocketError.Success => sent,
            SocketError.WouldBlock => 0,
            _ => -1,
        };
    }

    /// <summary>A send taken under the gate, started outside it.</summary>
    internal readonly struct PendingSend(DirectSender sender, byte[] buffer, int length)
    {
        public void Start() => _ = sender.SendAsync(buffer, length);
    }

    private async Task SendAsync(byte[] buffer, int length)
    {
        while (true)
        {
            var failed = false;
            var wentAsync = false;
            try
            {
                var sent = _tryAtOnce ? SendAtOnce(buffer, length) : 0;
                if (sent < 0)
                {
                    failed = true;
                }
                else if (sent < length)
                {
                    // A stream socket's SendAsync returns once every byte is sent; it tries the system call at once.
                    wentAsync = true;
                    // The runtime's socket, made now for a connection that had none: a slow reader's sends wait there from here.
                    await socket.Socket.SendAsync(buffer.AsMemory(sent, length - sent), SocketFlags.None).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
            {
                failed = true;
            }

            TaskCompletionSource? progress;
            lock (gate)
            {
                // The socket's cached send arguments keep the last buffer sent asynchronously (ReleaseBuffers lets it go).
                _socketHoldsBuffer |= wentAsync;
                if (_spare is null && buffer.Length <= SpareMaximum && !failed)
                {
                    _spare = buffer;
                }
                else
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }

                progress = _progress;
                _progress = null;
                _inFlight = 0;
                if (failed || _length == 0)
                {
                    _sending = false;
                    buffer = null!;
                }

                if (failed)
                {
                    _failed = true;
                    _length = 0;
                    ReleaseBuffers();
                }
                else if (_length > 0)
                {
                    // What piled up while this send was in flight goes next, in the same loop.
                    buffer = _buffer!;
                    length = _length;
                    _inFlight = length;
                    _buffer = null;
                    _length = 0;
                }
            }

            progress?.TrySetResult();
            if (failed)
            {
                onFailure.Abort();
                return;
            }

            if (buffer is null)
            {
                return;
            }
        }
    }
}
