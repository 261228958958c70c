using System.Net.Sockets;
using Relay.Testing;
using ITestOutputHelper = Xunit.Abstractions.ITestOutputHelper;

namespace Relay.Bench.Micro.Tests;

/// <summary>
/// The per-delivery allocation budget for MQTT subscribers (issue 14: "nothing allocated per delivery"), measured end
/// to end: a standalone node in this process with its MQTT listener, real TCP connections on loopback, a publisher
/// sending PUBLISH packets and subscribers reading what the node sends them. Whatever the node allocates per message
/// (parsing the publish, its <c>RelayMessage</c>, history, the one MQTT encoding) is paid once whatever the subscriber
/// count, so the test compares the same messages published to a topic with <see cref="Subscribers"/> subscribers and
/// to one with a single subscriber: what the many cost beyond the one, per extra delivery, must stay under one byte
/// (one object per delivery would be 24 bytes or more).
/// </summary>
/// <remarks>
/// The clients are this process's too, so they allocate nothing per packet: each subscriber reads on its own thread
/// with a blocking receive into its own buffer, scans whole packets in place and answers a QoS 1 delivery with a
/// PUBACK from its own four-byte array. The publisher sends pre-built bursts and the test waits on a
/// <see cref="CountdownEvent"/> the readers signal, so a window's only allocations are the node's (and the
/// runtime's rare one-off work, which the quietest of <see cref="Windows"/> windows leaves out).
/// </remarks>
public sealed class MqttDeliveryAllocationBudgetTests(ITestOutputHelper output)
{
    private const int Subscribers = 100;
    private const int Messages = 5_000;
    private const int Windows = 3;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(true, 4, 0)]
    [InlineData(true, 5, 0)]
    [InlineData(true, 4, 1)]
    [InlineData(true, 5, 1)]
    [InlineData(true, 4, 2)]
    [InlineData(true, 5, 2)]
    [InlineData(false, 4, 0)]
    [InlineData(false, 4, 1)]
    [InlineData(false, 5, 2)]
    public async Task Delivery_ToMqttSubscribers_AllocatesNothingPerDelivery(bool bareSocket, byte level, byte qos)
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Mqtt:OwnTransport"] = bareSocket ? "true" : "false",
            ["Relay:Ingress:PublishRatePerSecond"] = "1000000",
        });

        var run = Guid.NewGuid().ToString("N")[..8];
        var many = $"budget-{run}/many";
        var one = $"budget-{run}/one";
        using var readers = new ReaderSet();
        for (var i = 0; i < Subscribers; i++)
        {
            readers.Add(server, level, $"many-{run}-{i}", many, qos);
        }

        readers.Add(server, level, $"one-{run}", one, qos);
        using var publisher = BlockingClient.Connect(server, level, $"pub-{run}");
        var publishing = new Publisher(publisher.Socket, readers, level, qos);
        readers.Start();

        var toMany = publishing.Bursts(many, Subscribers);
        var toOne = publishing.Bursts(one, 1);

        var (manyWindow, oneWindow) = QuietestOf(() => publishing.Run(toMany), () => publishing.Run(toOne));
        const long messages = Messages;
        var extraDeliveries = messages * (Subscribers - 1);
        var perExtra = (manyWindow.Bytes - oneWindow.Bytes) / (double)extraDeliveries;
        output.WriteLine($"{(bareSocket ? "bare socket" : "Kestrel's transport")}, MQTT {(level == 5 ? "5" : "3.1.1")}, QoS {qos}: {messages} messages to {Subscribers} subscribers: {manyWindow.Deliveries} deliveries, {manyWindow.Bytes} bytes ({manyWindow.Bytes / (double)messages:0.#} B/message); to 1: {oneWindow.Deliveries} deliveries, {oneWindow.Bytes} bytes ({oneWindow.Bytes / (double)messages:0.#} B/message); {perExtra:0.###} B per extra delivery");

        Assert.Equal(messages * Subscribers, manyWindow.Deliveries);
        Assert.Equal(messages, oneWindow.Deliveries);
        Assert.True(perExtra < 1,
            $"{messages} messages cost the process {manyWindow.Bytes} bytes to {Subscribers} MQTT subscribers but {oneWindow.Bytes} to 1: {perExtra:0.###} B per extra delivery; budget: under 1");
    }

    /// <summary>
    /// A publisher's side of QoS 1 and 2 allocates nothing beyond QoS 0's: the same messages, to one subscriber at QoS 0,
    /// from a publisher at QoS 0 and from one at <paramref name="qos"/> (the node's PUBACK, or PUBREC, the PUBREL read and
    /// PUBCOMP), the quietest of <see cref="Windows"/> windows each, must differ by under a byte per message. Each
    /// acknowledgement was an encoded packet before (its object, a writer and an array): 184 B per QoS 1 message, 368 per
    /// QoS 2 one.
    /// </summary>
    [Theory]
    [InlineData(true, 4, 1)]
    [InlineData(true, 5, 1)]
    [InlineData(true, 5, 2)]
    [InlineData(false, 4, 2)]
    public async Task Publish_AtQos1And2_ThePublishersAcknowledgementsAllocateNothing(bool bareSocket, byte level, byte qos)
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Mqtt:OwnTransport"] = bareSocket ? "true" : "false",
            ["Relay:Ingress:PublishRatePerSecond"] = "1000000",
        });

        var run = Guid.NewGuid().ToString("N")[..8];
        var topic = $"budget-{run}/acks";
        using var readers = new ReaderSet();
        readers.Add(server, level, $"sub-{run}", topic, 0);
        using var atZero = BlockingClient.Connect(server, level, $"pub0-{run}");
        using var atQos = BlockingClient.Connect(server, level, $"pub{qos}-{run}");
        var zero = new Publisher(atZero.Socket, readers, level, 0);
        var acknowledged = new Publisher(atQos.Socket, readers, level, qos);
        readers.Start();
        var zeroBursts = zero.Bursts(topic, 1);
        var acknowledgedBursts = acknowledged.Bursts(topic, 1);

        var (zeroWindow, acknowledgedWindow) = QuietestOf(() => zero.Run(zeroBursts), () => acknowledged.Run(acknowledgedBursts));
        var perMessage = (acknowledgedWindow.Bytes - zeroWindow.Bytes) / (double)Messages;
        output.WriteLine($"{(bareSocket ? "bare socket" : "Kestrel's transport")}, MQTT {(level == 5 ? "5" : "3.1.1")}: {Messages} messages published at QoS 0: {zeroWindow.Bytes} bytes; at QoS {qos}: {acknowledgedWindow.Bytes} bytes; {perMessage:0.###} B per message for the exchange");
        Assert.Equal(Messages, zeroWindow.Deliveries);
        Assert.Equal(Messages, acknowledgedWindow.Deliveries);
        Assert.True(perMessage < 1, $"a QoS {qos} publish cost the process {perMessage:0.###} B more than a QoS 0 one; budget: under 1");
    }

    // The meter sees what the node would allocate per delivery: the same run with each reader allocating an object
    // per packet it reads (as a per-delivery allocation on the node's side would) shows at least 24 bytes per delivery.
    [Fact]
    public async Task Meter_SeesAnAllocationPerDelivery()
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Ingress:PublishRatePerSecond"] = "1000000",
        });

        var run = Guid.NewGuid().ToString("N")[..8];
        var topic = $"budget-{run}/meter";
        using var readers = new ReaderSet { AllocatePerPacket = true };
        for (var i = 0; i < Subscribers; i++)
        {
            readers.Add(server, 4, $"meter-{run}-{i}", topic, 0);
        }

        using var publisher = BlockingClient.Connect(server, 4, $"pub-{run}");
        var publishing = new Publisher(publisher.Socket, readers, 4, 0);
        readers.Start();
        var bursts = publishing.Bursts(topic, Subscribers);
        publishing.Run(bursts);
        var measured = publishing.Run(bursts);
        output.WriteLine($"with readers allocating per packet: {measured.Deliveries} deliveries, {measured.Bytes} bytes");

        Assert.Equal((long)Messages * Subscribers, measured.Deliveries);
        Assert.True(measured.Bytes >= measured.Deliveries * 24,
            $"readers allocating an object per delivery showed only {measured.Bytes} bytes over {measured.Deliveries} deliveries");
    }

    private readonly record struct Window(long Deliveries, long Bytes);

    // Warms both runs (JIT, first-use statics, pools, rings), then runs them in turn Windows times: each one's quietest
    // window (the runtime's rare one-off work left out).
    private static (Window First, Window Second) QuietestOf(Func<Window> first, Func<Window> second)
    {
        first();
        second();
        var (a, b) = (first(), second());
        for (var window = 1; window < Windows; window++)
        {
            var (x, y) = (first(), second());
            a = x.Bytes < a.Bytes ? x : a;
            b = y.Bytes < b.Bytes ? y : b;
        }

        return (a, b);
    }

    /// <summary>Publishes pre-built bursts and waits for every delivery (and, at QoS 1 and 2, every exchange's end) of each.</summary>
    private sealed class Publisher(Socket socket, ReaderSet readers, byte level, byte qos)
    {
        private readonly PubAckCounter _acks = new(socket, qos);

        // QoS 2 publishes wait for their PUBREL within the node's Receive Maximum (64): bursts of 50.
        private int Burst => qos == 2 ? 50 : 100;

        /// <summary>One burst's bytes for <paramref name="topic"/> (packet ids 1..Burst above QoS 0, reused once acknowledged), and its subscriber count.</summary>
        public (byte[] Bytes, int Subscribers) Bursts(string topic, int subscribers)
        {
            var bytes = new List<byte>();
            for (var i = 1; i <= Burst; i++)
            {
                bytes.AddRange(RawMqttClient.Publish(topic, qos, (ushort)i, payload: new string('p', 100), level: level));
            }

            return (bytes.ToArray(), subscribers);
        }

        /// <summary>Publishes <see cref="Messages"/> messages in bursts, each waited for; what the process allocated meanwhile.</summary>
        public Window Run((byte[] Bytes, int Subscribers) burst)
        {
            var deliveries = readers.Deliveries;
            var bytes = GC.GetTotalAllocatedBytes(precise: true);
            for (var i = 0; i < Messages / Burst; i++)
            {
                readers.Expect(Burst * burst.Subscribers);
                _acks.Expect(Burst);
                socket.Send(burst.Bytes);
                readers.Wait();
                _acks.Wait();
            }

            bytes = GC.GetTotalAllocatedBytes(precise: true) - bytes;
            return new Window(readers.Deliveries - deliveries, bytes);
        }
    }

    /// <summary>
    /// The ends of the publisher's exchanges, on a thread of their own: a PUBACK at QoS 1; at QoS 2 a PUBREC, answered with
    /// a PUBREL from its own array, then the PUBCOMP (nothing to read at QoS 0).
    /// </summary>
    private sealed class PubAckCounter
    {
        private readonly Socket _socket;
        private readonly byte _qos;
        private readonly CountdownEvent _pending = new(0);
        private readonly Thread? _thread;

        public PubAckCounter(Socket socket, byte qos)
        {
            _socket = socket;
            _qos = qos;
            if (qos > 0)
            {
                _thread = new Thread(Read) { IsBackground = true, Name = "publisher acks" };
                _thread.Start();
            }
        }

        public void Expect(int acks)
        {
            if (_qos > 0)
            {
                _pending.Reset(acks);
            }
        }

        public void Wait()
        {
            if (_qos > 0 && !_pending.Wait(Timeout))
            {
                throw new TimeoutException($"{_pending.CurrentCount} PUBACKs missing after {Timeout}");
            }
        }

        private void Read()
        {
            var scanner = new PacketScanner();
            var release = new byte[] { 0x62, 2, 0, 0 };
            try
            {
                while (scanner.Receive(_socket))
                {
                    while (scanner.Next(out var first, out _, out var body))
                    {
                        if (first == 0x50)
                        {
                            release[2] = body[0];
                            release[3] = body[1];
                            _socket.Send(release);
                        }
                        else if (first >> 4 == (_qos == 1 ? 4 : 7))
                        {
                            _pending.Signal();
                        }
                    }
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException or InvalidOperationException)
            {
                // The test ended and closed the socket (or a count went wrong, which the waiting test reports).
            }
        }
    }

    /// <summary>
    /// The subscribers: each a connection read on its own thread, counting PUBLISH packets and acknowledging each as its
    /// QoS asks (PUBACK; PUBREC, then PUBCOMP for the PUBREL), from arrays of its own.
    /// </summary>
    private sealed class ReaderSet : IDisposable
    {
        private readonly List<BlockingClient> _clients = [];
        private readonly List<Thread> _threads = [];
        private readonly CountdownEvent _pending = new(0);
        private long _deliveries;

        public bool AllocatePerPacket { get; init; }

        public long Deliveries => Interlocked.Read(ref _deliveries);

        public void Add(RelayServer server, byte level, string clientId, string topic, byte qos)
        {
            var client = BlockingClient.Connect(server, level, clientId);
            _clients.Add(client);
            client.Subscribe(topic, qos, level);
            _threads.Add(new Thread(() => Read(client.Socket, client.Scanner)) { IsBackground = true, Name = clientId });
        }

        public void Start() => _threads.ForEach(t => t.Start());

        public void Expect(int deliveries) => _pending.Reset(deliveries);

        public void Wait()
        {
            if (!_pending.Wait(Timeout))
            {
                throw new TimeoutException($"{_pending.CurrentCount} deliveries missing after {Timeout}");
            }
        }

        public void Dispose()
        {
            foreach (var client in _clients)
            {
                client.Dispose();
            }

            foreach (var thread in _threads)
            {
                thread.Join(Timeout);
            }
        }

        private void Read(Socket socket, PacketScanner scanner)
        {
            var ack = new byte[4];
            object? kept = null;
            try
            {
                while (scanner.Receive(socket))
                {
                    while (scanner.Next(out var first, out var id, out var body))
                    {
                        if (first == 0x62)
                        {
                            Send(socket, ack, 0x70, (ushort)((body[0] << 8) | body[1]));
                            continue;
                        }

                        if (first >> 4 != 3)
                        {
                            continue;
                        }

                        var delivered = (first >> 1) & 3;
                        if (delivered > 0)
                        {
                            Send(socket, ack, delivered == 1 ? (byte)0x40 : (byte)0x50, id);
                        }

                        if (AllocatePerPacket)
                        {
                            kept = new object();
                        }

                        Interlocked.Increment(ref _deliveries);
                        _pending.Signal();
                    }
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException or InvalidOperationException)
            {
                // The test ended and closed the socket (or a count went wrong, which the waiting test reports).
            }

            GC.KeepAlive(kept);
        }

        private static void Send(Socket socket, byte[] ack, byte first, ushort id)
        {
            ack[0] = first;
            ack[1] = 2;
            ack[2] = (byte)(id >> 8);
            ack[3] = (byte)id;
            socket.Send(ack);
        }
    }

    /// <summary>
    /// Whole MQTT packets out of a socket's bytes, in place in one buffer (a packet cut by a read is moved to the
    /// buffer's start and completed by the next): its first byte, and for a PUBLISH above QoS 0 its packet id.
    /// </summary>
    private sealed class PacketScanner
    {
        private readonly byte[] _buffer = new byte[256 * 1024];
        private int _start;
        private int _end;

        /// <summary>Reads more bytes (blocking); false when the peer closed.</summary>
        public bool Receive(Socket socket)
        {
            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }

            var read = socket.Receive(_buffer, _end, _buffer.Length - _end, SocketFlags.None);
            _end += read;
            return read > 0;
        }

        public bool Next(out byte first, out ushort id, out ReadOnlySpan<byte> body)
        {
            first = 0;
            id = 0;
            body = default;
            var at = _start + 1;
            var length = 0;
            for (var shift = 0; ; shift += 7, at++)
            {
                if (at >= _end)
                {
                    return false;
                }

                length |= (_buffer[at] & 0x7F) << shift;
                if ((_buffer[at] & 0x80) == 0)
                {
                    break;
                }
            }

            var start = at + 1;
            if (_end - start < length)
            {
                return false;
            }

            first = _buffer[_start];
            body = _buffer.AsSpan(start, length);
            if (first >> 4 == 3 && ((first >> 1) & 3) > 0)
            {
                var topicLength = (body[0] << 8) | body[1];
                id = (ushort)((body[2 + topicLength] << 8) | body[3 + topicLength]);
            }

            _start = start + length;
            return true;
        }
    }

    /// <summary>
    /// An MQTT client on a socket that is only ever used blocking: the runtime then makes no wait object per receive (a
    /// socket once used asynchronously allocates one for every blocking receive that has to wait).
    /// </summary>
    private sealed class BlockingClient : IDisposable
    {
        private BlockingClient(Socket socket) => Socket = socket;

        public Socket Socket { get; }

        public PacketScanner Scanner { get; } = new();

        public static BlockingClient Connect(RelayServer server, byte level, string clientId)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveTimeout = (int)Timeout.TotalMilliseconds };
            var client = new BlockingClient(socket);
            try
            {
                socket.Connect(System.Net.IPAddress.Loopback, server.MqttPort!.Value);
                socket.Send(RawMqttClient.Connect(level, clientId));
                client.Expect(0x20, "CONNACK", body => body[1] == 0);
                return client;
            }
            catch
            {
                client.Dispose();
                throw;
            }
        }

        public void Subscribe(string topic, byte qos, byte level)
        {
            Socket.Send(RawMqttClient.Subscribe(topic, qos, level));
            Expect(0x90, "SUBACK", body => body[^1] == qos);
        }

        public void Dispose() => Socket.Dispose();

        private void Expect(byte first, string name, Func<byte[], bool> accepted)
        {
            while (true)
            {
                if (Scanner.Next(out var got, out _, out var body))
                {
                    var bytes = body.ToArray();
                    if (got != first || !accepted(bytes))
                    {
                        throw new InvalidOperationException($"expected an accepting {name}, got 0x{got:X2} {Convert.ToHexString(bytes)}");
                    }

                    return;
                }

                if (!Scanner.Receive(Socket))
                {
                    throw new InvalidOperationException($"closed before {name}");
                }
            }
        }
    }
}
