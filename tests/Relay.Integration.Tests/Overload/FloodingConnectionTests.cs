using System.Net;
using System.Net.Sockets;
using System.Text;
using Relay.Integration.Tests.Distributed;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Overload;

/// <summary>
/// One client that always has more input queued must not take the node from the others. The standalone host runs as
/// shipped (socket completions inline, <c>Relay:Ingress:InlineSocketCompletions</c>) with two socket event threads; a
/// raw client floods publish frames as fast as the socket takes them (reading its replies, so it is never cut as a slow
/// consumer) while eight clients publish and wait for each ack in turn. Before the reader had a budget per wake-up, the
/// four clients whose sockets shared the flooder's event thread got no ack at all.
/// </summary>
[Collection(nameof(ConnectionFloodTests))]
public sealed class FloodingConnectionTests(ITestOutputHelper output)
{
    private const int Probes = 8;
    private static readonly TimeSpan FloodTime = TimeSpan.FromSeconds(4);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task OneConnectionFloodingPublishes_LeavesEveryOtherConnectionServed(bool ownTransport)
    {
        await using var host = await ServiceProcess.StartStandaloneAsync(new Dictionary<string, string>
        {
            ["DOTNET_PROCESSOR_COUNT"] = "2",
            ["Logging__LogLevel__Default"] = "Warning",
            ["Relay__Ingress__OwnTransport"] = ownTransport ? "true" : "false",
        });
        var realtime = new Uri($"ws://127.0.0.1:{host.Port}/v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)}");

        var probes = new List<TestSocket>();
        try
        {
            for (var i = 0; i < Probes; i++)
            {
                probes.Add(await TestSocket.ConnectAsync(realtime));
            }

            using var flooder = await FloodAsync(host.Port);
            var rounds = await Task.WhenAll(probes.Select((probe, i) => ProbeAsync(probe, $"probe:{i}", flooder.Stop)));
            await flooder.Finished.WaitAsync(TimeSpan.FromSeconds(30));

            output.WriteLine($"flooder sent {flooder.SentBytes:N0} bytes, read {flooder.ReadBytes:N0}; acks per probe: {string.Join(' ', rounds)}");
            Assert.False(host.HasExited, "the node died under the flood:\n" + host.Tail());
            Assert.True(flooder.SentBytes > 4_000_000, $"the flood was {flooder.SentBytes:N0} bytes: too little to show anything");
            Assert.True(flooder.StillConnected, "the node cut the flooder, so nothing here was tested under a flood:\n" + host.Tail());
            Assert.All(rounds, acks => Assert.True(acks >= 10, $"a client got {acks} acks in {FloodTime.TotalSeconds} s while another connection flooded (acks per client: {string.Join(' ', rounds)})"));
        }
        finally
        {
            foreach (var probe in probes)
            {
                await probe.DisposeAsync();
            }
        }
    }

    /// <summary>Publishes and waits for each ack until the flood stops; a reply that takes over 5 s fails the test.</summary>
    private static async Task<int> ProbeAsync(TestSocket probe, string channel, CancellationToken flooding)
    {
        var acks = 0;
        while (!flooding.IsCancellationRequested)
        {
            var reply = await probe.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["data"] = acks }).WaitAsync(TimeSpan.FromSeconds(5));
            Assert.Equal("ok", reply.GetProperty("type").GetString());
            acks++;
            await Task.Delay(20, CancellationToken.None);
        }

        return acks;
    }

    private static async Task<Flooder> FloodAsync(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, port).WaitAsync(TestSocket.DefaultTimeout);
        await socket.SendAsync(Encoding.ASCII.GetBytes(RawConnection.UpgradeRequest()));
        var head = new byte[4096];
        var read = await socket.ReceiveAsync(head).WaitAsync(TestSocket.DefaultTimeout);
        Assert.StartsWith("HTTP/1.1 101", Encoding.ASCII.GetString(head, 0, read), StringComparison.Ordinal);

        // 2,000 publishes (over the connection's rate, so most are answered 42900: each is read, parsed and answered).
        var batch = Enumerable.Range(0, 2_000)
            .SelectMany(i => RawConnection.Frame(1, Encoding.UTF8.GetBytes($$"""{"type":"publish","ref":{{i + 1}},"channel":"flood:{{i % 50}}","data":"x"}""")))
            .ToArray();
        return new Flooder(socket, batch, FloodTime);
    }

    /// <summary>Writes the batch again and again for the flood's time, and reads (and drops) every reply meanwhile.</summary>
    private sealed class Flooder : IDisposable
    {
        private readonly Socket _socket;
        private readonly CancellationTokenSource _stop;
        private long _sent;
        private long _read;

        public Flooder(Socket socket, byte[] batch, TimeSpan time)
        {
            _socket = socket;
            _stop = new CancellationTokenSource(time);
            var reading = Task.Run(ReadAsync);
            Finished = Task.WhenAll(Task.Run(() => WriteAsync(batch)), reading);
        }

        public CancellationToken Stop => _stop.Token;

        public Task Finished { get; }

        public long SentBytes => Interlocked.Read(ref _sent);

        public long ReadBytes => Interlocked.Read(ref _read);

        public bool StillConnected { get; private set; } = true;

        public void Dispose()
        {
            _stop.Dispose();
            _socket.Dispose();
        }

        private async Task WriteAsync(byte[] batch)
        {
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    Interlocked.Add(ref _sent, await _socket.SendAsync(batch, SocketFlags.None, _stop.Token));
                }
            }
            catch (OperationCanceledException)
            {
                // The flood's time is up.
            }
            catch (SocketException)
            {
                StillConnected = false;
            }
        }

        private async Task ReadAsync()
        {
            var buffer = new byte[64 * 1024];
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    var count = await _socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                    if (count == 0)
                    {
                        StillConnected = false;
                        return;
                    }

                    Interlocked.Add(ref _read, count);
                }
            }
            catch (OperationCanceledException)
            {
                // The flood's time is up.
            }
            catch (SocketException)
            {
                StillConnected = false;
            }
        }
    }
}
