using System.Net.Sockets;
using Relay.Ingress.Connections;

namespace Relay.Services.Tests.Connections;

/// <summary>
/// The wait for a new connection's first bytes in Relay's poller (<see cref="InputWait"/>), and the look at them that
/// leaves them in place (<see cref="SocketCalls.Peek"/>), on real loopback connections: the wait ends when bytes come
/// (or the client ends), or false when cancelled or the socket is closed, and gives its slot back every time; what was
/// peeked is read again whole. The realtime listener classifies each connection this way before it serves it.
/// </summary>
public sealed class InputWaitTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ForAsync_EndsWhenBytesCome_AndThePeekLeavesThemForTheRead(bool inline)
    {
        var poller = ReadinessPoller.CreateForTests(1, inline);
        var (server, client) = await ReadinessPollerTests.PairAsync();
        using (server)
        using (client)
        {
            var waiting = InputWait.ForAsync(poller, server.SafeHandle, CancellationToken.None);
            await Task.Delay(200);
            Assert.False(waiting.IsCompleted, "the wait ended before the client sent anything");
            Assert.Equal(1, poller.SlotsInUse);

            client.Send("GET /v1/realtime"u8);
            Assert.True(await waiting.WaitAsync(Timeout));
            Assert.Equal(0, poller.SlotsInUse);

            // Peeked twice, then read: the same bytes each time.
            var buffer = new byte[64];
            for (var i = 0; i < 2; i++)
            {
                Assert.Equal(16, SocketCalls.Peek(server.SafeHandle, buffer, out var error));
                Assert.Equal(SocketError.Success, error);
                Assert.Equal("GET /v1/realtime"u8, buffer.AsSpan(0, 16));
            }

            Assert.Equal(16, SocketCalls.Receive(server.SafeHandle, buffer, out _));
            Assert.Equal(0, SocketCalls.Peek(server.SafeHandle, buffer, out var empty));
            Assert.Equal(SocketError.WouldBlock, empty);
        }
    }

    [Fact]
    public async Task ForAsync_ForBytesAlreadyThere_EndsAtOnce_AndForTheClientsEnd_Too()
    {
        var poller = ReadinessPoller.CreateForTests(1, inline: true);
        var (server, client) = await ReadinessPollerTests.PairAsync();
        using (server)
        using (client)
        {
            client.Send("x"u8);
            await Task.Delay(100);
            Assert.True(await InputWait.ForAsync(poller, server.SafeHandle, CancellationToken.None).WaitAsync(Timeout));

            var buffer = new byte[8];
            Assert.Equal(1, SocketCalls.Receive(server.SafeHandle, buffer, out _));
            var waiting = InputWait.ForAsync(poller, server.SafeHandle, CancellationToken.None);
            client.Shutdown(SocketShutdown.Send);
            Assert.True(await waiting.WaitAsync(Timeout));
            Assert.Equal(0, SocketCalls.Peek(server.SafeHandle, buffer, out var error));
            Assert.Equal(SocketError.Success, error);
            Assert.Equal(0, poller.SlotsInUse);
        }
    }

    [Fact]
    public async Task ForAsync_Cancelled_IsFalse_GivesTheSlotBack_AndLaterBytesWakeNothing()
    {
        var poller = ReadinessPoller.CreateForTests(1, inline: true);
        var (server, client) = await ReadinessPollerTests.PairAsync();
        using (server)
        using (client)
        using (var cut = new CancellationTokenSource())
        {
            var waiting = InputWait.ForAsync(poller, server.SafeHandle, cut.Token);
            await Task.Delay(100);
            await cut.CancelAsync();
            Assert.False(await waiting.WaitAsync(Timeout));
            Assert.Equal(0, poller.SlotsInUse);

            // Out of the poller: the socket's bytes are still there for whoever serves it next.
            client.Send("late"u8);
            await Task.Delay(100);
            var buffer = new byte[8];
            Assert.Equal(4, SocketCalls.Peek(server.SafeHandle, buffer, out _));

            // A wait cancelled before it starts ends at once.
            Assert.False(await InputWait.ForAsync(poller, server.SafeHandle, cut.Token).WaitAsync(Timeout));
            Assert.Equal(0, poller.SlotsInUse);
        }
    }

    [Fact]
    public async Task ForAsync_OnAClosedSocket_IsFalse_AndHoldsNoSlot()
    {
        var poller = ReadinessPoller.CreateForTests(1, inline: true);
        var (server, client) = await ReadinessPollerTests.PairAsync();
        using (client)
        {
            server.Dispose();
            Assert.False(await InputWait.ForAsync(poller, server.SafeHandle, CancellationToken.None).WaitAsync(Timeout));
            Assert.Equal(0, poller.SlotsInUse);
            Assert.Throws<ObjectDisposedException>(() => SocketCalls.Peek(server.SafeHandle, new byte[8], out _));
        }
    }

    [Fact]
    public async Task ReceiveStamped_TellsWhenTheLastBytesReadArrived_OnceStampingIsOn()
    {
        var (server, client) = await ReadinessPollerTests.PairAsync();
        using (server)
        using (client)
        {
            var buffer = new byte[64];

            // Not asked: no time.
            client.Send("a"u8);
            await Task.Delay(50);
            Assert.Equal(1, SocketCalls.ReceiveStamped(server.SafeHandle, buffer, out var error, out var unstamped));
            Assert.Equal(SocketError.Success, error);
            Assert.Equal(0, unstamped);

            Assert.True(SocketCalls.StampArrivals(server.SafeHandle));
            client.Send("b"u8);
            await Task.Delay(300);
            var secondSent = DateTime.UtcNow.Ticks;
            client.Send("c"u8);
            await Task.Delay(300);

            // Both read at once: the time is the last one's, which came ~300 ms after the first and ~300 ms before now.
            var read = DateTime.UtcNow.Ticks;
            Assert.Equal(2, SocketCalls.ReceiveStamped(server.SafeHandle, buffer, out error, out var arrived));
            Assert.Equal("bc"u8, buffer.AsSpan(0, 2));
            Assert.InRange(arrived, secondSent, read - TimeSpan.FromMilliseconds(200).Ticks);

            Assert.Equal(0, SocketCalls.ReceiveStamped(server.SafeHandle, buffer, out error, out _));
            Assert.Equal(SocketError.WouldBlock, error);
        }
    }
}
