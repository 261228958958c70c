using System.IO.Pipelines;
using System.Net.Sockets;
using Relay.Ingress.Connections;
using Relay.Ingress.WebSockets;

namespace Relay.Ingress.Sending;

/// <summary>
/// A connection's bare socket on Relay's own transport: reads through <see cref="SocketReader"/>; writes either go to
/// the socket directly (a realtime connection's <see cref="PipeWebSocket"/>) or, for a connection handler written
/// against a pipe (MQTT), through the <see cref="SocketWriter"/> <see cref="OpenOutput"/> makes.
/// </summary>
/// <param name="socket">The accepted connection.</param>
/// <param name="poller">Where reads wait for input (<c>Relay:Ingress:ReadinessPoller</c>); null: the runtime's zero-byte receive.</param>
internal sealed class BareSocketTransport(BareSocket socket, ReadinessPoller? poller) : IDuplexPipe, IAbortable
{
    private readonly SocketReader _input = new(socket, poller);
    private SocketWriter? _output;

    public PipeReader Input => _input;

    /// <summary>The connection's socket.</summary>
    public BareSocket Socket => socket;

    /// <summary>The writer <see cref="OpenOutput"/> made.</summary>
    public SocketWriter Output => _output ?? throw new InvalidOperationException("no output was opened on this transport");

    PipeWriter IDuplexPipe.Output => Output;

    /// <summary>Makes the pipe writer onto the socket: <paramref name="gate"/> guards its send buffer, <paramref name="flushes"/> sends it.</summary>
    public SocketWriter OpenOutput(Lock gate, FlushScheduler flushes) => _output = new SocketWriter(socket, gate, flushes, this);

    /// <summary>The client's address and port, or null once the socket is gone.</summary>
    public System.Net.EndPoint? Remote => socket.Remote;

    /// <summary>
    /// Ends the input: a pending read completes as the end of the stream (what the client sends from now is not read
    /// but drained when the connection finishes), while what is written still goes out. A pipe's
    /// <see cref="PipeReader.CancelPendingRead"/>, for this transport.
    /// </summary>
    public void StopReading() => _input.Stop();

    /// <summary>Ends the connection at once; pending reads and sends end with it.</summary>
    public void Abort()
    {
        // A closed socket leaves Relay's poller without a wake-up: a waiting read ends here, as the end of the input.
        _input.Stop();
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already gone.
        }

        socket.Dispose();
    }

    /// <summary>
    /// Once the connection has ended, closes it the way TCP lets the client read everything up to the end: waits until
    /// what was written through <see cref="Output"/> is with the kernel (closing at once would lose a send in flight),
    /// sends the end of the stream after it, and reads away what the client still sends until the client closes its side
    /// (<see cref="SocketReader.DrainAsync"/>), all within <paramref name="timeout"/>; then closes. Closing with the
    /// client's bytes unread made the kernel reset the connection: a client still writing (a burst past Receive Maximum,
    /// a node draining under a publisher) lost the DISCONNECT that said why, and its sends failed with a broken pipe.
    /// With <paramref name="waitForClose"/> false, only what has arrived already is read away, and the socket closes
    /// without waiting for the client's end (a refusal, as the HTTP one: a flood of clients that keep their sockets open
    /// after the answer would otherwise hold every refusal slot for the whole wait).
    /// </summary>
    public async Task FinishAsync(TimeSpan timeout, TimeProvider time, bool waitForClose = true)
    {
        // Closed whatever happens: an unclosed transport would keep its socket and its poller slot.
        try
        {
            var started = time.GetTimestamp();
            if (_output is { } output)
            {
                try
                {
                    await output.WhenSentAsync().WaitAsync(timeout, time).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // A peer that reads nothing: closed with its bytes unsent.
                    return;
                }
            }

            await EndStreamAsync(waitForClose ? timeout - time.GetElapsedTime(started) : TimeSpan.Zero, time).ConfigureAwait(false);
        }
        finally
        {
            Close();
        }
    }

    /// <summary>
    /// Once everything is sent and the connection's reader is done: sends the end of the stream and reads away what the
    /// client still sends until it closes its side, at most <paramref name="limit"/> (the socket is then closed by
    /// <see cref="Close"/>, without a reset for bytes left unread).
    /// </summary>
    public async Task EndStreamAsync(TimeSpan limit, TimeProvider time)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Reset or closed already: nothing to wait for.
            return;
        }

        await _input.DrainAsync(limit, time).ConfigureAwait(false);
    }

    /// <summary>After the connection has ended: closes the socket and gives the buffers back.</summary>
    public void Close()
    {
        Abort();
        _input.Complete();
        _output?.ReleaseBuffers();
    }
}
