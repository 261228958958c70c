using System.Net.Sockets;

namespace Relay.Ingress.Connections;

/// <summary>
/// One wait in Relay's <see cref="ReadinessPoller"/> for a new connection's first input, for a listener that peeks at
/// it before it decides who serves the connection (<c>RealtimeListenerFactory</c>). The runtime's zero-byte receive it
/// replaces makes the socket's <c>SocketAsyncContext</c>, receive arguments, operation and delegates (~0.7 KB), which
/// the socket keeps for its life even when Relay's poller serves it afterwards (docs/benchmarks.md). The slot is given
/// back when the wait ends, so the connection's own reader registers afresh.
/// </summary>
internal sealed class InputWait : IReadinessTarget
{
    private readonly TaskCompletionSource<bool> _arrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ReadinessPoller.Registration _registration;

    private InputWait(ReadinessPoller poller) => _registration = poller.Register(this);

    /// <summary>
    /// True once <paramref name="socket"/> has input or has ended (a wake-up can also be spurious: the caller's
    /// non-blocking read then finds nothing); false when <paramref name="cancellation"/> ends the wait first or the socket
    /// is closed. The socket is out of the poller when this returns.
    /// </summary>
    public static async Task<bool> ForAsync(ReadinessPoller poller, SafeSocketHandle socket, CancellationToken cancellation)
    {
        // Cancelled already: false, even with bytes there (arming first, the poller could report them before the
        // cancellation's callback ran).
        if (cancellation.IsCancellationRequested)
        {
            return false;
        }

        var wait = new InputWait(poller);
        try
        {
            if (!wait._registration.Arm(socket))
            {
                return false;
            }

            using (cancellation.UnsafeRegister(static state => ((TaskCompletionSource<bool>)state!).TrySetResult(false), wait._arrived))
            {
                return await wait._arrived.Task.ConfigureAwait(false);
            }
        }
        finally
        {
            wait._registration.Release(socket);
        }
    }

    /// <inheritdoc />
    public void OnReadable() => _arrived.TrySetResult(true);

    void IThreadPoolWorkItem.Execute() => OnReadable();
}
