using System.IO.Pipelines;
using System.Net.Sockets;
using Relay.Ingress.WebSockets;

namespace Relay.Ingress.Sending;

/// <summary>
/// A connection's bare socket on Relay's own transport: reads through <see cref="SocketReader"/>; writes either go to
/// the socket directly (a realtime connection's <see cref="PipeWebSocket"/>) or, for a connection handler written
/// against a pipe (MQTT), through the <see cref="SocketWriter"/> <see cref="OpenOutput"/> makes.
/// </summary>
internal sealed class BareSocketTransport(Socket socket) : IDuplexPipe
{
    private readonly SocketReader _input = new(socket);
    private SocketWriter? _output;

    public PipeReader Input => _input;

    /// <summary>The writer <see cref="OpenOutput"/> made.</summary>
    public SocketWriter Output => _output ?? throw new InvalidOperationException("no output was opened on this transport");

    PipeWriter IDuplexPipe.Output => Output;

    /// <summary>Makes the pipe writer onto the socket: <paramref name="gate"/> guards its send buffer, <paramref name="flushes"/> sends it.</summary>
    public SocketWriter OpenOutput(Lock gate, FlushScheduler flushes) => _output = new SocketWriter(socket, gate, flushes, Abort);

    /// <summary>
    /// Ends the input: a pending read completes as the end of the stream (what the client sends from now is not read),
    /// while what is written still goes out. A pipe's <see cref="PipeReader.CancelPendingRead"/>, for this transport.
    /// </summary>
    public void StopReading()
    {
        try
        {
            socket.Shutdown(SocketShutdown.Receive);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already gone: the read ends anyway.
        }
    }

    /// <summary>Ends the connection at once; pending reads and sends end with it.</summary>
    public void Abort()
    {
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
    /// Once the connection has ended: waits, at most <paramref name="timeout"/>, until what was written through
    /// <see cref="Output"/> is with the kernel (closing at once would lose a send in flight), then closes.
    /// </summary>
    public async Task FinishAsync(TimeSpan timeout)
    {
        if (_output is { } output)
        {
            try
            {
                await output.WhenSentAsync().WaitAsync(timeout).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // A peer that reads nothing: closed with its bytes unsent.
            }
        }

        Close();
    }

    /// <summary>After the connection has ended: closes the socket and gives the buffers back.</summary>
    public void Close()
    {
        Abort();
        _input.Complete();
        _output?.ReleaseBuffers();
    }
}
