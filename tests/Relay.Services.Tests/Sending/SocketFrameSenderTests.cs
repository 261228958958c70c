using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Relay.Ingress.Connections;
using Relay.Ingress.Sending;
using Relay.Ingress.WebSockets;

namespace Relay.Services.Tests.Sending;

/// <summary>
/// <see cref="SocketFrameSender"/> on a real loopback socket, as Relay's own transport serves a connection: what it
/// sends arrives, and its send buffers go back only after the connection has been quiet for several sweeps (a busy
/// connection keeps reusing its own).
/// </summary>
public sealed class SocketFrameSenderTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly Pipe _input = new();
    private Socket _server = null!;
    private Socket _client = null!;
    private PipeWebSocket _socket = null!;
    private SocketFrameSender _sender = null!;
    private long _payloadBytes;

    public async Task InitializeAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        _client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accepting = listener.AcceptAsync();
        await _client.ConnectAsync(listener.LocalEndPoint!);
        _server = await accepting;

        // As Relay's transport leaves its sockets: non-blocking, so a send that fits is one plain system call. The
        // heartbeat is an hour away: the sweeps under test are the buffers'.
        _server.Blocking = false;
        _socket = new PipeWebSocket(_input.Reader, new BareSocket(_server), subProtocol: null, abort: new AbortAction(() => { }), TimeProvider.System);
        _sender = new SocketFrameSender(_socket, budget: 16 * 1024 * 1024, new FlushScheduler(), heartbeat: TimeSpan.FromHours(1), metrics: null);
    }

    public Task DisposeAsync()
    {
        _server.Dispose();
        _client.Dispose();
        return Task.CompletedTask;
    }

    [Fact]
    public async Task QuietConnection_GivesItsBuffersBack_OnlyAfterSeveralQuietSweeps()
    {
        await SendAndReceiveAsync(1000);
        Assert.True(_sender.HoldsBuffers, "a connection that just sent keeps its buffer for the next send");

        // The first sweep sees the send; then it takes QuietSweepsBeforeTrim quiet sweeps in a row.
        _sender.Sweep();
        for (var i = 1; i < SocketFrameSender.QuietSweepsBeforeTrim; i++)
        {
            _sender.Sweep();
            Assert.True(_sender.HoldsBuffers, $"released after {i} quiet sweeps, before {SocketFrameSender.QuietSweepsBeforeTrim}");
        }

        _sender.Sweep();
        Assert.False(_sender.HoldsBuffers, $"still holding a buffer after {SocketFrameSender.QuietSweepsBeforeTrim} quiet sweeps");

        // And it still works afterwards.
        await SendAndReceiveAsync(5000);
    }

    [Fact]
    public async Task ConnectionSendingBetweenSweeps_KeepsItsBuffer()
    {
        // A fan-out that pauses between bursts: idle at the instant of every sweep, but sending in between.
        for (var burst = 0; burst < SocketFrameSender.QuietSweepsBeforeTrim * 3; burst++)
        {
            await SendAndReceiveAsync(10_000);
            _sender.Sweep();
            Assert.True(_sender.HoldsBuffers, $"buffer dropped after burst {burst} although the connection sends every sweep");
        }
    }

    [Fact]
    public async Task SendBetweenQuietSweeps_StartsTheCountAgain()
    {
        await SendAndReceiveAsync(100);
        for (var i = 0; i < SocketFrameSender.QuietSweepsBeforeTrim; i++)
        {
            _sender.Sweep();
        }

        await SendAndReceiveAsync(100);
        for (var i = 0; i < SocketFrameSender.QuietSweepsBeforeTrim; i++)
        {
            _sender.Sweep();
            Assert.True(_sender.HoldsBuffers, $"released {i + 1} sweeps after a send, counting quiet sweeps from before it");
        }

        _sender.Sweep();
        Assert.False(_sender.HoldsBuffers);
    }

    /// <summary>
    /// Sends one text frame of <paramref name="size"/> bytes of a running counter, checks the peer receives exactly that
    /// frame, and waits until the send is over (its buffer back with the sender).
    /// </summary>
    private async Task SendAndReceiveAsync(int size)
    {
        var first = _payloadBytes;
        var payload = new byte[size];
        for (var i = 0; i < size; i++)
        {
            payload[i] = (byte)(first + i);
        }

        Assert.True(_sender.TrySend(payload));
        var header = size < 126 ? 2 : 4;
        var frame = new byte[header + size];
        var read = 0;
        using var timeout = new CancellationTokenSource(Timeout);
        while (read < frame.Length)
        {
            var n = await _client.ReceiveAsync(frame.AsMemory(read), SocketFlags.None, timeout.Token);
            Assert.True(n > 0, "the peer closed");
            read += n;
        }

        Assert.Equal(0x81, frame[0]);
        Assert.Equal(payload, frame[header..]);
        _payloadBytes += size;

        // The send's bookkeeping follows the system call: wait for it (a few steps at most, each bounded).
        for (var step = 0; ; step++)
        {
            Task progress;
            lock (_socket.WriteGate)
            {
                if (_socket.Output.IsIdle)
                {
                    return;
                }

                progress = _socket.Output.WhenProgressAsync();
            }

            Assert.True(step < 10, "the send did not finish");
            await progress.WaitAsync(Timeout);
        }
    }
}
