using System.Net;
using System.Net.Sockets;
using System.Text;
using Relay.Ingress.Connections;
using Relay.Ingress.Sending;

namespace Relay.Services.Tests.Connections;

/// <summary>
/// Relay's own wait for input (<see cref="ReadinessPoller"/>) on real loopback connections: one wake-up per arm, input
/// that came before the arm reported at once, nothing for a slot given back (even when the slot is taken again), a
/// closed socket refused, thousands of sockets each woken for its own input; and a bare-socket read waiting in it ends
/// when the transport is aborted (a closed socket leaves the poller without a wake-up).
/// </summary>
public sealed class ReadinessPollerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(300);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Arm_WakesOncePerArm_AndAtOnceForInputAlreadyThere(bool inline)
    {
        var poller = ReadinessPoller.CreateForTests(1, inline);
        var (server, client) = await PairAsync();
        using (server)
        using (client)
        {
            var target = new Target();
            var registration = poller.Register(target);
            Assert.True(registration.Arm(server.SafeHandle));
            await target.AssertNoWakeAsync();

            client.Send("x"u8);
            await target.WaitAsync(1);

            // One-shot: more input wakes nothing until the next arm, which reports what is there at once.
            client.Send("y"u8);
            await target.AssertNoWakeAsync();
            Assert.True(registration.Arm(server.SafeHandle));
            await target.WaitAsync(2);

            // Consumed: the next arm waits for new input.
            var buffer = new byte[8];
            Assert.Equal(2, server.Receive(buffer));
            Assert.True(registration.Arm(server.SafeHandle));
            await target.AssertNoWakeAsync();
            client.Send("z"u8);
            await target.WaitAsync(3);

            // The client's end wakes an armed wait too.
            server.Receive(buffer);
            Assert.True(registration.Arm(server.SafeHandle));
            client.Shutdown(SocketShutdown.Send);
            await target.WaitAsync(4);
            Assert.Equal(0, server.Receive(buffer));
            registration.Release(server.SafeHandle);
        }
    }

    [Fact]
    public async Task Release_DropsTheSlotsWakeUps_EvenWhenTheSlotIsTakenAgain()
    {
        var poller = ReadinessPoller.CreateForTests(1, inline: true);
        var (first, firstClient) = await PairAsync();
        var (second, secondClient) = await PairAsync();
        using (first)
        using (firstClient)
        using (second)
        using (secondClient)
        {
            var old = new Target();
            var registration = poller.Register(old);
            Assert.True(registration.Arm(first.SafeHandle));
            registration.Release(first.SafeHandle);
            registration.Release(first.SafeHandle);

            // The same slot, a new generation: the first socket's input wakes neither its old target nor the new one.
            var fresh = new Target();
            var again = poller.Register(fresh);
            Assert.True(again.Arm(second.SafeHandle));
            firstClient.Send("x"u8);
            await old.AssertNoWakeAsync();
            await fresh.AssertNoWakeAsync();

            secondClient.Send("y"u8);
            await fresh.WaitAsync(1);
            Assert.Equal(0, old.Wakes);
            again.Release(second.SafeHandle);
        }
    }

    [Fact]
    public async Task Arm_OnAClosedSocket_IsRefused()
    {
        var poller = ReadinessPoller.CreateForTests(1, inline: true);
        var (server, client) = await PairAsync();
        using (client)
        {
            var registration = poller.Register(new Target());
            server.Dispose();
            Assert.False(registration.Arm(server.SafeHandle));
            registration.Release(server.SafeHandle);
        }
    }

    [Fact]
    public async Task ManySockets_EachIsWokenForItsOwnInput()
    {
        const int Count = 2000;
        var poller = ReadinessPoller.CreateForTests(2, inline: false);
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(Count);
        var pairs = new List<(Socket Server, Socket Client, Target Target, ReadinessPoller.Registration Registration)>();
        try
        {
            for (var i = 0; i < Count; i++)
            {
                var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await client.ConnectAsync(listener.LocalEndPoint!).WaitAsync(Timeout);
                var server = await listener.AcceptAsync().WaitAsync(Timeout);
                var target = new Target();
                var registration = poller.Register(target);
                Assert.True(registration.Arm(server.SafeHandle));
                pairs.Add((server, client, target, registration));
            }

            // Every other socket gets input: those, and only those, wake.
            for (var i = 0; i < Count; i += 2)
            {
                pairs[i].Client.Send("x"u8);
            }

            for (var i = 0; i < Count; i += 2)
            {
                await pairs[i].Target.WaitAsync(1);
            }

            await Task.Delay(Quiet);
            Assert.Equal(Count / 2, pairs.Count(p => p.Target.Wakes == 1));
            Assert.All(pairs.Where((_, i) => i % 2 == 1), p => Assert.Equal(0, p.Target.Wakes));
        }
        finally
        {
            foreach (var (server, client, _, registration) in pairs)
            {
                registration.Release(server.SafeHandle);
                server.Dispose();
                client.Dispose();
            }
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task BareSocketRead_WaitingInThePoller_EndsWhenTheTransportIsAborted(bool inline)
    {
        var (server, client) = await PairAsync();
        using (client)
        {
            var transport = new BareSocketTransport(new BareSocket(server), ReadinessPoller.CreateForTests(1, inline));
            Assert.Equal("hi", await ReadOneAsync(transport, client));

            var waiting = transport.Input.ReadAsync().AsTask();
            await Task.Delay(Quiet);
            Assert.False(waiting.IsCompleted);
            transport.Abort();
            var result = await waiting.WaitAsync(Timeout);
            Assert.True(result.IsCompleted);
            transport.Close();
        }
    }

    [Fact]
    public async Task BareSocketTransport_ThatEnds_GivesItsSlotBack()
    {
        var poller = ReadinessPoller.CreateForTests(1, inline: true);
        var (server, client) = await PairAsync();
        var (aborted, abortedClient) = await PairAsync();
        using (client)
        using (abortedClient)
        {
            // Ended by the client: read to the end, then finished as the listeners finish a connection.
            var transport = new BareSocketTransport(new BareSocket(server), poller);
            var other = new BareSocketTransport(new BareSocket(aborted), poller);
            Assert.Equal(2, poller.SlotsInUse);
            Assert.Equal("hi", await ReadOneAsync(transport, client));
            var end = transport.Input.ReadAsync().AsTask();
            client.Shutdown(SocketShutdown.Send);
            Assert.True((await end.WaitAsync(Timeout)).IsCompleted);
            await transport.FinishAsync(Timeout, TimeProvider.System).WaitAsync(Timeout);
            Assert.Equal(1, poller.SlotsInUse);

            // Ended by the server while a read waits: aborted, then closed.
            var waiting = other.Input.ReadAsync().AsTask();
            other.Abort();
            Assert.True((await waiting.WaitAsync(Timeout)).IsCompleted);
            other.Close();
            Assert.Equal(0, poller.SlotsInUse);
        }
    }

    private static async Task<string> ReadOneAsync(BareSocketTransport transport, Socket client)
    {
        client.Send("hi"u8);
        var result = await transport.Input.ReadAsync().AsTask().WaitAsync(Timeout);
        var text = Encoding.ASCII.GetString(result.Buffer);
        transport.Input.AdvanceTo(result.Buffer.End);
        return text;
    }

    /// <summary>A connected loopback pair: the accepted side and the client.</summary>
    internal static async Task<(Socket Server, Socket Client)> PairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!).WaitAsync(Timeout);
        var server = await listener.AcceptAsync().WaitAsync(Timeout);
        return (server, client);
    }

    /// <summary>Counts its wake-ups and lets a test wait for the n-th.</summary>
    private sealed class Target : IReadinessTarget
    {
        private int _wakes;

        public int Wakes => Volatile.Read(ref _wakes);

        public void OnReadable() => Interlocked.Increment(ref _wakes);

        public void Execute() => OnReadable();

        public async Task WaitAsync(int wakes)
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (Wakes < wakes)
            {
                Assert.True(DateTime.UtcNow < deadline, $"woken {Wakes} times, waited for {wakes}");
                await Task.Delay(5);
            }

            Assert.Equal(wakes, Wakes);
        }

        public async Task AssertNoWakeAsync()
        {
            var before = Wakes;
            await Task.Delay(Quiet);
            Assert.Equal(before, Wakes);
        }
    }
}
