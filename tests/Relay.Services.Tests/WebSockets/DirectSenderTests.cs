using System.Net;
using System.Net.Sockets;
using Relay.Ingress.WebSockets;

namespace Relay.Services.Tests.WebSockets;

/// <summary>
/// <see cref="DirectSender"/> over a real loopback socket: what it sends arrives, and its buffers go back only after
/// the connection has been quiet for several sweeps (a busy connection keeps reusing its own).
/// </summary>
public sealed class DirectSenderTests : IAsyncLifetime
{
    private readonly Lock _gate = new();
    private Socket _server = null!;
    private Socket _client = null!;
    private DirectSender _sender = null!;
    private long _received;

    public async Task InitializeAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        _client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accepting = listener.AcceptAsync();
        await _client.ConnectAsync(listener.LocalEndPoint!);
        _server = await accepting;

        // As Relay's transport leaves its sockets: non-blocking, so a send that fits is one plain system call.
        _server.Blocking = false;
        _sender = new DirectSender(_server, _gate, () => { });
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
        Assert.True(Holds(), "a connection that just sent keeps its buffer for the next send");

        // The first sweep sees the send; then it takes QuietSweepsBeforeTrim quiet sweeps in a row.
        Sweep();
        for (var i = 1; i < DirectSender.QuietSweepsBeforeTrim; i++)
        {
            Sweep();
            Assert.True(Holds(), $"released after {i} quiet sweeps, before {DirectSender.QuietSweepsBeforeTrim}");
        }

        Sweep();
        Assert.False(Holds(), $"still holding a buffer after {DirectSender.QuietSweepsBeforeTrim} quiet sweeps");

        // And it still works afterwards.
        await SendAndReceiveAsync(5000);
    }

    [Fact]
    public async Task ConnectionSendingBetweenSweeps_KeepsItsBuffer()
    {
        // A fan-out that pauses between bursts: idle at the instant of every sweep, but sending in between.
        for (var burst = 0; burst < DirectSender.QuietSweepsBeforeTrim * 3; burst++)
        {
            await SendAndReceiveAsync(10_000);
            Sweep();
            Assert.True(Holds(), $"buffer dropped after burst {burst} although the connection sends every sweep");
        }
    }

    [Fact]
    public async Task SendBetweenQuietSweeps_StartsTheCountAgain()
    {
        await SendAndReceiveAsync(100);
        for (var i = 0; i < DirectSender.QuietSweepsBeforeTrim; i++)
        {
            Sweep();
        }

        await SendAndReceiveAsync(100);
        for (var i = 0; i < DirectSender.QuietSweepsBeforeTrim; i++)
        {
            Sweep();
            Assert.True(Holds(), $"released {i + 1} sweeps after a send, counting quiet sweeps from before it");
        }

        Sweep();
        Assert.False(Holds());
    }

    private bool Holds()
    {
        lock (_gate)
        {
            return _sender.HoldsBuffers;
        }
    }

    private void Sweep()
    {
        lock (_gate)
        {
            _sender.TrimIfQuiet();
        }
    }

    /// <summary>Sends <paramref name="size"/> bytes of a running counter and checks the peer receives exactly them.</summary>
    private async Task SendAndReceiveAsync(int size)
    {
        var first = _received;
        lock (_gate)
        {
            var span = _sender.GetSpan(size);
            for (var i = 0; i < size; i++)
            {
                span[i] = (byte)(first + i);
            }

            _sender.Advance(size);
            Assert.True(_sender.Flush());
        }

        var buffer = new byte[size];
        var read = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (read < size)
        {
            var n = await _client.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, timeout.Token);
            Assert.True(n > 0, "the peer closed");
            read += n;
        }

        for (var i = 0; i < size; i++)
        {
            Assert.Equal((byte)(first + i), buffer[i]);
        }

        _received += size;
        Task progress;
        lock (_gate)
        {
            progress = _sender.WhenProgressAsync();
        }

        await progress.WaitAsync(TimeSpan.FromSeconds(10));
        lock (_gate)
        {
            Assert.True(_sender.IsIdle, "the send did not finish");
        }
    }
}
