using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Relay.Ingress.Connections;

/// <summary>
/// Accepts a listening socket's connections as bare descriptors (<c>accept4</c>, <see cref="SocketCalls.Accept"/>),
/// waiting for the listener in Relay's <see cref="ReadinessPoller"/>: an accepted connection is a
/// <see cref="BareSocket"/> over its handle, and the runtime makes no <see cref="Socket"/> for it, nor the peer's and
/// local addresses it would keep (docs/benchmarks.md, MQTT). The runtime's <see cref="Socket.AcceptAsync(Socket)"/>
/// stays where there is no poller. One accept loop at a time.
/// </summary>
internal sealed class DescriptorAcceptor : IReadinessTarget
{
    private readonly Socket _listener;
    private readonly bool _noDelay;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private ReadinessPoller.Registration _registration;
    private TaskCompletionSource? _readable;
    private bool _stopped;

    /// <param name="listener">A bound, listening socket (made non-blocking here); closed by its owner after <see cref="Stop"/>.</param>
    /// <param name="poller">Where the wait for the next connection registers.</param>
    /// <param name="noDelay">Nagle's algorithm off on each connection (Kestrel's <c>NoDelay</c>).</param>
    /// <param name="logger">Where a paused accept is logged.</param>
    public DescriptorAcceptor(Socket listener, ReadinessPoller poller, bool noDelay, ILogger logger)
    {
        _listener = listener;
        _noDelay = noDelay;
        _logger = logger;
        listener.Blocking = false;
        _registration = poller.Register(this);
    }

    /// <summary>
    /// The next connection, with its peer's address (null for a family other than IPv4 and IPv6). A client that reset
    /// before it was taken is skipped; out of descriptors or buffers, accepting pauses (connections wait in the backlog
    /// until some close). Throws <see cref="ObjectDisposedException"/> once <see cref="Stop"/> has run or the listener is closed.
    /// </summary>
    public async Task<(BareSocket Socket, IPEndPoint? Remote)> AcceptAsync()
    {
        while (true)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _stopped), this);
            var handle = SocketCalls.Accept(_listener.SafeHandle, out var remote, out var error);
            if (handle is not null)
            {
                if (!SocketCalls.SetNoDelay(handle, _noDelay))
                {
                    // Reset already: nothing to serve.
                    handle.Dispose();
                    continue;
                }

                return (new BareSocket(handle), remote);
            }

            switch (error)
            {
                case SocketError.WouldBlock:
                    await WaitAsync().ConfigureAwait(false);
                    break;
                case SocketError.ConnectionAborted:
                    // The client gave up before we took it.
                    break;
                default:
                    ListenSocket.LogAcceptPaused(_logger, ListenSocket.LocalOf(_listener), error);
                    await Task.Delay(ListenSocket.AcceptRetryDelay).ConfigureAwait(false);
                    break;
            }
        }
    }

    /// <summary>Ends accepting: a wait for the next connection ends (<see cref="AcceptAsync"/> throws), and the listener leaves the poller.</summary>
    public void Stop()
    {
        TaskCompletionSource? waiting;
        lock (_gate)
        {
            _stopped = true;
            waiting = _readable;
            _readable = null;
        }

        waiting?.TrySetResult();
        _registration.Release(_listener.SafeHandle);
    }

    /// <summary>Waits until the listener has a connection (or woke for nothing: the caller tries again).</summary>
    private Task WaitAsync()
    {
        TaskCompletionSource wait;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_stopped, this);
            wait = _readable = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        // Armed after the wait is in place, since the wake-up may come at once; the loop goes on on the pool, not the poller's thread.
        if (!_registration.Arm(_listener.SafeHandle))
        {
            throw new ObjectDisposedException(nameof(DescriptorAcceptor), "the listening socket is closed");
        }

        return wait.Task;
    }

    /// <inheritdoc />
    public void OnReadable()
    {
        TaskCompletionSource? waiting;
        lock (_gate)
        {
            waiting = _readable;
            _readable = null;
        }

        waiting?.TrySetResult();
    }

    void IThreadPoolWorkItem.Execute() => OnReadable();
}
