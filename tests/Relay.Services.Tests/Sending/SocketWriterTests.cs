using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Relay.Ingress.Connections;
using Relay.Ingress.Sending;
using Relay.Ingress.WebSockets;

namespace Relay.Services.Tests.Sending;

/// <summary>
/// The pipe writer onto a bare socket that MQTT over TCP writes through (Relay's own transport), on a real loopback
/// connection: what is flushed arrives whole and in order, the send buffer goes back after quiet sweeps, and a peer
/// that is gone ends the writer.
/// </summary>
public sealed class SocketWriterTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Flush_SendsWhatWasWritten_AndQuietSweepsGiveTheBufferBack()
    {
        var (server, client) = await PairAsync();
        using (server)
        using (client)
        {
            var writer = new SocketWriter(new BareSocket(server), new Lock(), new FlushScheduler(), new AbortAction(static () => { }));
            writer.Write("hello"u8);
            var flushed = await writer.FlushAsync().AsTask().WaitAsync(Timeout);
            Assert.False(flushed.IsCompleted);
            Assert.Equal("hello"u8.ToArray(), await ReadAsync(client, 5));
            await writer.WhenSentAsync().WaitAsync(Timeout);

            // The last send's buffer is kept for the next, until the connection has been quiet for a few sweeps.
            Assert.True(writer.HoldsBuffers);
            for (var sweep = 0; sweep < SocketFrameSender.QuietSweepsBeforeTrim; sweep++)
            {
                writer.Sweep();
                Assert.True(writer.HoldsBuffers);
            }

            writer.Sweep();
            Assert.False(writer.HoldsBuffers);
        }
    }

    [Fact]
    public async Task Sweep_WhileTheWriterHoldsASpan_KeepsTheBuffer()
    {
        var (server, client) = await PairAsync();
        using (server)
        using (client)
        {
            var writer = new SocketWriter(new BareSocket(server), new Lock(), new FlushScheduler(), new AbortAction(static () => { }));
            writer.Write("a"u8);
            await writer.FlushAsync().AsTask().WaitAsync(Timeout);
            await ReadAsync(client, 1);

            // Quiet for longer than the trim waits, but a packet is being written (nothing flushed yet): its memory stays.
            var memory = writer.GetMemory(5);
            for (var sweep = 0; sweep < SocketFrameSender.QuietSweepsBeforeTrim + 2; sweep++)
            {
                writer.Sweep();
            }

            Assert.True(writer.HoldsBuffers);
            "hello"u8.CopyTo(memory.Span);
            writer.Advance(5);
            await writer.FlushAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal("hello"u8.ToArray(), await ReadAsync(client, 5));
        }
    }

    [Fact]
    public async Task Flush_MoreThanTheKernelTakesAtOnce_CompletesWithEveryByteInOrder()
    {
        var (server, client) = await PairAsync();
        using (server)
        using (client)
        {
            var writer = new SocketWriter(new BareSocket(server), new Lock(), new FlushScheduler(), new AbortAction(static () => { }));
            var sent = new byte[8 * 1024 * 1024];
            for (var i = 0; i < sent.Length; i++)
            {
                sent[i] = (byte)(i * 31);
            }

            // The peer reads while the flush waits for the kernel to take the rest.
            var reading = ReadAsync(client, sent.Length);
            for (var at = 0; at < sent.Length; at += 64 * 1024)
            {
                writer.Write(sent.AsSpan(at, 64 * 1024));
                var flushed = await writer.FlushAsync().AsTask().WaitAsync(Timeout);
                Assert.False(flushed.IsCompleted);
            }

            Assert.Equal(sent, await reading.WaitAsync(Timeout));
        }
    }

    [Fact]
    public async Task Flush_PeerReset_EndsTheWriterAndCallsOnFailure()
    {
        var (server, client) = await PairAsync();
        using (server)
        {
            var failed = 0;
            var writer = new SocketWriter(new BareSocket(server), new Lock(), new FlushScheduler(), new AbortAction(() => Interlocked.Increment(ref failed)));
            client.LingerState = new LingerOption(true, 0);
            client.Dispose();

            // The reset reaches the server's socket shortly: a flush then reports the writer completed.
            var completed = false;
            for (var attempt = 0; attempt < 300 && !completed; attempt++)
            {
                writer.Write(new byte[1024]);
                completed = (await writer.FlushAsync().AsTask().WaitAsync(Timeout)).IsCompleted;
                if (!completed)
                {
                    await Task.Delay(10);
                }
            }

            Assert.True(completed, "flushes after the peer's reset never reported the writer completed");
            Assert.Equal(1, Volatile.Read(ref failed));
        }
    }

    /// <summary>A connected loopback pair; the server side non-blocking, as Relay's transport makes it.</summary>
    private static async Task<(Socket Server, Socket Client)> PairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!).WaitAsync(Timeout);
        var server = await listener.AcceptAsync().WaitAsync(Timeout);
        server.Blocking = false;
        return (server, client);
    }

    private static async Task<byte[]> ReadAsync(Socket socket, int count)
    {
        var received = new byte[count];
        var at = 0;
        while (at < count)
        {
            var read = await socket.ReceiveAsync(received.AsMemory(at), SocketFlags.None).AsTask().WaitAsync(Timeout);
            if (read == 0)
            {
                throw new IOException($"closed after {at} of {count} bytes");
            }

            at += read;
        }

        return received;
    }
}
