using System.Net;
using System.Net.Sockets;
using System.Buffers;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Relay.Ingress.Connections;
using Relay.Ingress.Sending;

namespace Relay.Services.Tests.Connections;

/// <summary>
/// Connections taken as bare descriptors (<see cref="DescriptorAcceptor"/>, <c>accept4</c>) and served with no runtime
/// <see cref="Socket"/>, on real loopback connections (IPv4 and IPv6): the peer's address and Nagle's setting are the
/// ones the runtime's accept would give; input is read through Relay's poller and output written straight to the
/// descriptor, with the runtime's socket made only for a send the kernel cannot take at once (a reader that does not
/// read), which still delivers every byte; both ways of ending a connection close the descriptor and give its slot back;
/// stopping the acceptor ends a wait for the next connection.
/// </summary>
public sealed class DescriptorAcceptorTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Accepted_HasThePeersAddressAndNoDelay_AndIsServedWithoutARuntimeSocket(bool ipv6)
    {
        var (poller, listener, acceptor) = Start(ipv6);
        using var listening = listener;
        using var client = new Socket(listener.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        var (socket, remote) = await ConnectAsync(client, listener, acceptor);

        Assert.Equal(client.LocalEndPoint, remote);
        Assert.Equal(client.LocalEndPoint, socket.Remote);
        var transport = new BareSocketTransport(socket, poller);
        var writer = transport.OpenOutput(new Lock(), new FlushScheduler());

        // In through the poller, out straight to the descriptor.
        client.Send("ping"u8);
        var read = await transport.Input.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal("ping", Encoding.ASCII.GetString(read.Buffer));
        transport.Input.AdvanceTo(read.Buffer.End);
        writer.Write("pong"u8);
        await writer.FlushAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal("pong", await ReceiveAsync(client, 4));
        Assert.False(socket.HasRuntimeSocket);

        // Ended by the client: the read ends, the connection finishes and closes, its slot goes back.
        var end = transport.Input.ReadAsync().AsTask();
        client.Shutdown(SocketShutdown.Send);
        Assert.True((await end.WaitAsync(Timeout)).IsCompleted);
        await transport.FinishAsync(Timeout, TimeProvider.System).WaitAsync(Timeout);
        Assert.True(socket.Handle.IsClosed);
        Assert.Equal(0, await client.ReceiveAsync(new byte[1]).WaitAsync(Timeout));
        Assert.Null(socket.Remote);
        Assert.False(socket.HasRuntimeSocket);

        // The listener's slot is the one left, until the acceptor stops.
        Assert.Equal(1, poller.SlotsInUse);
        acceptor.Stop();
        Assert.Equal(0, poller.SlotsInUse);
    }

    [Fact]
    public async Task NoDelay_IsSetAsAsked()
    {
        var poller = ReadinessPoller.CreateForTests(1, inline: true);
        using var listener = Listen(ipv6: false);
        foreach (var noDelay in new[] { true, false })
        {
            var acceptor = new DescriptorAcceptor(listener, poller, noDelay, NullLogger.Instance);
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            var (socket, _) = await ConnectAsync(client, listener, acceptor);
            Assert.Equal(noDelay, socket.Socket.NoDelay);
            socket.Dispose();
            acceptor.Stop();
        }
    }

    [Fact]
    public async Task Send_TheKernelCannotTakeAtOnce_MakesTheRuntimeSocket_AndEveryByteArrives()
    {
        var (poller, listener, acceptor) = Start(false);
        using var listening = listener;
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
        var (socket, _) = await ConnectAsync(client, listener, acceptor);
        var transport = new BareSocketTransport(socket, poller);
        var writer = transport.OpenOutput(new Lock(), new FlushScheduler());

        // Far more than both kernels' buffers hold while the client reads nothing.
        var payload = new byte[8 * 1024 * 1024];
        for (var i = 0; i < payload.Length; i++)
        {
            payload[i] = (byte)(i * 31);
        }

        writer.Write(payload);
        _ = writer.FlushAsync();
        var deadline = DateTime.UtcNow + Timeout;
        while (!socket.HasRuntimeSocket)
        {
            Assert.True(DateTime.UtcNow < deadline, "the send never waited on the runtime's socket");
            await Task.Delay(10);
        }

        var received = new byte[payload.Length];
        var total = 0;
        while (total < received.Length)
        {
            var count = await client.ReceiveAsync(received.AsMemory(total)).AsTask().WaitAsync(Timeout);
            Assert.NotEqual(0, count);
            total += count;
        }

        Assert.Equal(payload, received);
        await writer.WhenSentAsync().WaitAsync(Timeout);
        transport.Abort();
        transport.Close();
        Assert.True(socket.Handle.IsClosed);
        acceptor.Stop();
    }

    [Fact]
    public async Task Stop_EndsAWaitForTheNextConnection()
    {
        var (poller, listener, acceptor) = Start(false);
        using var listening = listener;
        var accepting = acceptor.AcceptAsync();
        await Task.Delay(200);
        Assert.False(accepting.IsCompleted);
        acceptor.Stop();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => accepting.WaitAsync(Timeout));
        Assert.Equal(0, poller.SlotsInUse);
    }

    [Fact]
    public async Task ManyClientsAtOnce_AreEachAcceptedOnce()
    {
        const int Clients = 200;
        var (poller, listener, acceptor) = Start(false);
        using var listening = listener;
        var clients = new List<Socket>();
        var accepted = new List<BareSocket>();
        try
        {
            var accepting = Task.Run(async () =>
            {
                for (var i = 0; i < Clients; i++)
                {
                    accepted.Add((await acceptor.AcceptAsync()).Socket);
                }
            });
            for (var i = 0; i < Clients; i++)
            {
                var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                clients.Add(client);
                await client.ConnectAsync(listener.LocalEndPoint!).WaitAsync(Timeout);
            }

            await accepting.WaitAsync(Timeout);
            Assert.Equal(
                clients.Select(client => client.LocalEndPoint!.ToString()).Order(),
                accepted.Select(socket => socket.Remote!.ToString()).Order());
        }
        finally
        {
            acceptor.Stop();
            accepted.ForEach(socket => socket.Dispose());
            clients.ForEach(client => client.Dispose());
        }
    }

    /// <summary>A listener on a free loopback port (IPv6 or IPv4) with an acceptor waiting in a poller of its own.</summary>
    private static (ReadinessPoller Poller, Socket Listener, DescriptorAcceptor Acceptor) Start(bool ipv6)
    {
        var poller = ReadinessPoller.CreateForTests(1, inline: true);
        var listener = Listen(ipv6);
        return (poller, listener, new DescriptorAcceptor(listener, poller, noDelay: true, NullLogger.Instance));
    }

    private static Socket Listen(bool ipv6)
    {
        var listener = new Socket(ipv6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(ipv6 ? IPAddress.IPv6Loopback : IPAddress.Loopback, 0));
        listener.Listen(512);
        return listener;
    }

    /// <summary>Connects <paramref name="client"/> and takes its connection with <paramref name="acceptor"/>.</summary>
    private static async Task<(BareSocket Socket, IPEndPoint? Remote)> ConnectAsync(Socket client, Socket listener, DescriptorAcceptor acceptor)
    {
        var accepting = acceptor.AcceptAsync();
        await client.ConnectAsync(listener.LocalEndPoint!).WaitAsync(Timeout);
        return await accepting.WaitAsync(Timeout);
    }

    private static async Task<string> ReceiveAsync(Socket client, int count)
    {
        var buffer = new byte[count];
        var total = 0;
        while (total < count)
        {
            var read = await client.ReceiveAsync(buffer.AsMemory(total)).AsTask().WaitAsync(Timeout);
            Assert.NotEqual(0, read);
            total += read;
        }

        return Encoding.ASCII.GetString(buffer);
    }
}
