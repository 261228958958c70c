using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Relay.Auth;
using Relay.Bus.InMemory;
using Relay.Core.Auth;
using Relay.Core.Messages;
using Relay.Core.Namespaces;
using Relay.FanOut;
using Relay.FanOut.Interest;
using Relay.Ingress;
using Relay.Ingress.Realtime;
using Relay.Ingress.Sending;
using Relay.Ingress.Subscriptions;
using Relay.Ingress.WebSockets;

namespace Relay.Bench.Micro.Delivery;

/// <summary>How a rig's connections send: what the lean WebSocket writes to.</summary>
internal enum RigTransport
{
    /// <summary>The transport's output pipe, an in-memory <see cref="Pipe"/> (as with <c>DirectSocketSends</c> off).</summary>
    Pipe,

    /// <summary>
    /// Straight to the connection's socket (<see cref="DirectSender"/>, the default in production): one end of a
    /// Unix-domain socket pair, the other end read by the rig. Two file descriptors per connection.
    /// </summary>
    Socket,
}

/// <summary>
/// The per-delivery path of one ingress node, wired as the standalone host wires it but without a network:
/// <c>IRelayBus.PublishSequencedAsync</c> (routing's hand-off) → <see cref="FanOutService"/> and its
/// <see cref="InterestTable"/> → <see cref="InMemoryBus"/> → <see cref="IngressNode.OnDeliverAsync"/> →
/// <see cref="LocalSubscriptions"/> → each <see cref="Subscription"/> → each real <see cref="RealtimeConnection"/>,
/// which writes the frame into its transport (or queues it on its <see cref="SendQueue{T}"/>) and has it flushed.
/// </summary>
/// <remarks>
/// Every connection is the real <see cref="RealtimeConnection"/> over a real <see cref="PipeWebSocket"/> whose input
/// is an in-memory <see cref="Pipe"/> and whose output is another pipe or a local socket (<see cref="RigTransport"/>);
/// the pipes take their memory from Kestrel's own block pool. A drain loop per connection reads what it sends and
/// counts whole WebSocket frames (on a pipe inline, on the flushing thread). <see cref="Deliver(RelayMessage)"/>
/// publishes and returns once every connection's frame is out: read out of its transport, or, when the connections are
/// not run (no receive or write loop), taken off its send queue on the calling thread as its write loop's
/// <c>TryRead</c> would. So the rig does not depend on what a connection does with a frame (queue it, write it at once,
/// flush it now or later, on this thread or another). Work that stays on the delivering thread shows in
/// <c>GC.GetAllocatedBytesForCurrentThread</c>; work that hops threads only in <c>GC.GetTotalAllocatedBytes</c>.
/// </remarks>
internal sealed class DeliveryRig : IDisposable
{
    public const string App = "bench-app";
    public const string Channel = "bench:room/lobby";
    public const string FirstEpoch = "epoch-0";

    // The connection keeps its queue private; the rig reads it the way the write loop does. Looked up once.
    private static readonly FieldInfo QueueField = typeof(RealtimeConnection).GetField("_queue", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? throw new InvalidOperationException("RealtimeConnection._queue is gone: update DeliveryRig to the connection's new send queue");

    // Kestrel's own factory of transport memory pools: the pipes get the pool a socket's pipes get.
    private static readonly Lazy<IMemoryPoolFactory<byte>> KestrelPools = new(CreateKestrelPools);

    private readonly InMemoryBus _bus = new();
    private readonly MemoryPool<byte> _pool = KestrelPools.Value.Create(new MemoryPoolOptions { Owner = "relay-bench-micro" });
    private readonly RigMeters _meters = new();
    private readonly IDisposable _fanOutRegistration;
    private readonly IDisposable _nodeRegistration;
    private readonly List<Subscription> _subscriptions = [];
    private readonly List<Connection> _connections = [];
    private readonly List<Task> _drains = [];
    private readonly List<Task> _runs = [];
    private readonly DeliveryBatch _burst = new(TimeProvider.System);
    private readonly bool _runConnections;
    private readonly Socket? _listener;
    private readonly string? _socketPath;
    private long _framesDrained;
    private long _framesTaken;
    private long _framesExpected;
    private ConcurrentQueue<byte[]>? _captured;

    /// <param name="channelSubscribers">Connections subscribed to <see cref="Channel"/> itself.</param>
    /// <param name="patternSubscribers">Further connections subscribed to patterns matching it (<c>bench:room/+</c>, <c>bench:room/#</c> alternately).</param>
    /// <param name="runConnections">Whether the connections run (<c>RunAsync</c>: receive and write loops).</param>
    /// <param name="transport">What the connections send to.</param>
    public DeliveryRig(int channelSubscribers, int patternSubscribers = 0, bool runConnections = false, RigTransport transport = RigTransport.Pipe)
    {
        _runConnections = runConnections;
        var options = Options.Create(new IngressOptions { NodeId = "bench-node" });
        Node = new IngressNode(_bus, options, Options.Create(new RelayAuthOptions()), new NoAuthenticator(), new NamespacePolicies(new NamespacesOptions()),
            TimeProvider.System, _meters, NullLogger<IngressNode>.Instance);
        FanOut = new FanOutService(_bus, new InterestTable(), _meters, NullLogger<FanOutService>.Instance);

        // Register on the bus directly rather than through StartAsync: the node's once-a-second sweep would ping
        // and then abort these silent peers, and it is not part of a delivery.
        _fanOutRegistration = _bus.ServeFanOut(FanOut);
        _nodeRegistration = _bus.ServeNode(Node.NodeId, Node);

        if (transport == RigTransport.Socket)
        {
            _socketPath = Path.Combine(Path.GetTempPath(), $"relay-bench-{Guid.NewGuid():N}.sock");
            _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _listener.Bind(new UnixDomainSocketEndPoint(_socketPath));
            _listener.Listen(64);
        }

        var principal = new RelayPrincipal(App, "bench-key", ClientId: null, Capabilities.AllowAll, ExpiresAt: null);
        for (var i = 0; i < channelSubscribers + patternSubscribers; i++)
        {
            var connection = new Connection(Node, principal, _pool, _listener);
            _connections.Add(connection);
            var pattern = i >= channelSubscribers;
            var channel = !pattern ? Channel : (i % 2 == 0 ? "bench:room/+" : "bench:room/#");
            Subscribe(connection.Realtime, channel, pattern);
        }

        foreach (var connection in _connections)
        {
            _drains.Add(connection.DrainAsync(this));
        }

        if (runConnections)
        {
            foreach (var connection in _connections)
            {
                _runs.Add(connection.Realtime.RunAsync());
            }

            // Each connection sends its 'connected' frame first.
            _framesExpected = _connections.Count;
            WaitForFrames(_framesExpected);
        }
    }

    public IngressNode Node { get; }

    public FanOutService FanOut { get; }

    /// <summary>How many connections (subscribers) the rig has.</summary>
    public int Connections => _connections.Count;

    /// <summary>WebSocket frames the drain loops have read from the connections' transports.</summary>
    public long FramesDrained => Volatile.Read(ref _framesDrained);

    /// <summary>A message of <see cref="Channel"/>, not yet encoded; about 100 bytes of JSON payload.</summary>
    public static RelayMessage NewMessage(long seq, string epoch) => new()
    {
        App = App,
        Channel = Channel,
        Epoch = epoch,
        Seq = seq,
        Name = "chat",
        Data = Payload,
        ClientId = "publisher-1",
        Timestamp = 1_767_225_600_000 + seq,
    };

    /// <summary>The JSON payload every message carries.</summary>
    public static ReadOnlyMemory<byte> Payload { get; } = """{"text":"hello from the per-delivery benchmark","user":{"id":42,"name":"ada"},"tags":["a","b"]}"""u8.ToArray();

    /// <summary>
    /// Routing's hand-off of a sequenced message, exactly as <c>ChannelAuthority</c> calls it: fan-out, then the node,
    /// then every local subscription. Over the in-memory bus this returns once every connection has been handed the
    /// message; what a connection does with it next (a queue, a deferred flush) may still be under way.
    /// </summary>
    public void Publish(RelayMessage message)
    {
        var delivery = _bus.PublishSequencedAsync(message);
        if (!delivery.IsCompletedSuccessfully)
        {
            delivery.AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>
    /// Publishes <paramref name="message"/> and returns once every connection's frame of it has been taken: read off
    /// its send queue here (connections not run, as the write loop's <c>TryRead</c> would), or read out of its pipe by
    /// the drain loop (whoever wrote it there). Returns how many frames that was; allocates nothing itself.
    /// </summary>
    public long Deliver(RelayMessage message) => Deliver(message, null, inBurst: false);

    /// <summary>
    /// As <see cref="Deliver(RelayMessage)"/>, but published as a realtime connection's receive loop publishes: inside a
    /// <see cref="DeliveryBatch"/>, whose deferred flushes are handed over when the burst ends.
    /// </summary>
    public long DeliverInBurst(RelayMessage message) => Deliver(message, null, inBurst: true);

    /// <summary>As <see cref="Deliver(RelayMessage)"/>, adding the frames read off the send queues to <paramref name="queued"/>.</summary>
    public long Deliver(RelayMessage message, List<ReadOnlyMemory<byte>>? queued, bool inBurst = false)
    {
        if (inBurst)
        {
            _burst.Enter();
            try
            {
                Publish(message);
            }
            finally
            {
                DeliveryBatch.Leave();
            }

            _burst.Submit();
        }
        else
        {
            Publish(message);
        }

        long taken = 0;
        if (!_runConnections)
        {
            // Enqueue runs inside Publish, so whatever a connection queued is there now.
            foreach (var connection in _connections)
            {
                while (connection.Queue.TryRead(out var frame))
                {
                    queued?.Add(frame);
                    taken++;
                }
            }
        }

        var before = _framesTaken;
        _framesExpected += _connections.Count - taken;
        WaitForFrames(_framesExpected);
        return taken + (_framesTaken - before);
    }

    /// <summary>From now on the drain loops also keep a copy of every frame's payload (for checks; it allocates).</summary>
    public ConcurrentQueue<byte[]> CapturePayloads() => _captured = new ConcurrentQueue<byte[]>();

    /// <summary>Stops <see cref="CapturePayloads"/>.</summary>
    public void StopCapture() => _captured = null;

    // Waits (spinning, never sleeping) until the drain loops have read this many frames in all.
    private void WaitForFrames(long frames)
    {
        var spinner = default(SpinWait);
        var deadline = Environment.TickCount64 + 60_000;
        while (Volatile.Read(ref _framesDrained) < frames)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
            if (spinner.Count % 1024 == 0 && Environment.TickCount64 > deadline)
            {
                throw new TimeoutException($"the connections' transports carried {FramesDrained} of {frames} frames in 60 s (connections cut as slow consumers: {Node.SlowConsumerDisconnects})");
            }
        }

        _framesTaken = Volatile.Read(ref _framesDrained);
    }

    /// <summary>Subscribes another sink to <see cref="Channel"/> (the tests use it to prove the meter sees an allocating subscriber).</summary>
    public void Subscribe(IMessageSink sink) => Subscribe(sink, Channel, pattern: false);

    public void Dispose()
    {
        foreach (var subscription in _subscriptions)
        {
            Wait(Node.RemoveSubscriptionAsync(subscription));
        }

        foreach (var connection in _connections)
        {
            // The client goes away: the receive loop ends, the connection completes its queue and its write loop.
            connection.CloseInput();
        }

        Task.WaitAll([.. _runs], TimeSpan.FromSeconds(30));
        foreach (var connection in _connections)
        {
            connection.CloseOutput();
        }

        Task.WaitAll([.. _drains], TimeSpan.FromSeconds(30));
        _listener?.Dispose();
        if (_socketPath is not null)
        {
            File.Delete(_socketPath);
        }

        _nodeRegistration.Dispose();
        _fanOutRegistration.Dispose();
        Node.Dispose();
        _meters.Dispose();
        _pool.Dispose();
    }

    private static IMemoryPoolFactory<byte> CreateKestrelPools()
    {
        // Built, never started: only its services are used.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        var host = builder.Build();
        return host.Services.GetRequiredService<IMemoryPoolFactory<byte>>();
    }

    private static void Wait(ValueTask task)
    {
        if (!task.IsCompletedSuccessfully)
        {
            task.AsTask().GetAwaiter().GetResult();
        }
    }

    private void Subscribe(IMessageSink sink, string channel, bool pattern)
    {
        // What IngressNode.StartSubscriptionAsync does once routing has answered with the channel's position.
        var subscription = new Subscription(sink, App, channel, pattern);
        Wait(Node.AddSubscriptionAsync(subscription));
        if (!pattern)
        {
            subscription.GoLive(FirstEpoch, 0, static () => { });
        }

        _subscriptions.Add(subscription);
    }

    private void CountFrames(int frames) => Interlocked.Add(ref _framesDrained, frames);

    /// <summary>A real connection: the rig writes its input pipe (never, here) and reads what it sends.</summary>
    private sealed class Connection
    {
        private readonly Pipe _input;
        private readonly Pipe _output;
        private readonly Socket? _server;
        private readonly Socket? _client;
        private readonly FrameCounter _counter = new();

        public Connection(IngressNode node, RelayPrincipal principal, MemoryPool<byte> pool, Socket? listener)
        {
            // Kestrel's block pool, as a socket transport's pipes have (the default pool, ArrayPool<byte>.Shared,
            // keeps only a few dozen free buffers per core: fewer than a burst to many connections holds at once).
            // Inline schedulers on the output: a flush runs the drain loop right there, on the flushing thread.
            _input = new Pipe(new PipeOptions(pool: pool, useSynchronizationContext: false));
            _output = new Pipe(new PipeOptions(pool: pool, readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false));
            if (listener is not null)
            {
                _client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                _client.Connect(listener.LocalEndPoint!);
                _server = listener.Accept();
            }

            var socket = new PipeWebSocket(new DuplexPipe(_input.Reader, _output.Writer), "relay.v1.json", CloseInput, TimeProvider.System, _server);
            Realtime = new RealtimeConnection(socket, principal, node, new NoAuthenticator(), NullLogger.Instance);
            Queue = (SendQueue<ReadOnlyMemory<byte>>)QueueField.GetValue(Realtime)!;
        }

        public RealtimeConnection Realtime { get; }

        public SendQueue<ReadOnlyMemory<byte>> Queue { get; }

        public void CloseInput() => _input.Writer.Complete();

        public void CloseOutput()
        {
            _output.Writer.Complete();
            _server?.Dispose();
            _client?.Dispose();
        }

        // Reads what the connection sends and counts whole WebSocket frames.
        public Task DrainAsync(DeliveryRig rig) => _client is null ? DrainPipeAsync(rig) : DrainSocketAsync(rig, _client);

        private async Task DrainPipeAsync(DeliveryRig rig)
        {
            var reader = _output.Reader;
            while (true)
            {
                var read = await reader.ReadAsync().ConfigureAwait(false);
                var frames = 0;
                foreach (var segment in read.Buffer)
                {
                    frames += _counter.Feed(segment.Span, rig._captured);
                }

                reader.AdvanceTo(read.Buffer.End);
                if (frames > 0)
                {
                    rig.CountFrames(frames);
                }

                if (read.IsCompleted || read.IsCanceled)
                {
                    await reader.CompleteAsync().ConfigureAwait(false);
                    return;
                }
            }
        }

        private async Task DrainSocketAsync(DeliveryRig rig, Socket client)
        {
            var buffer = new byte[64 * 1024];
            while (true)
            {
                int count;
                try
                {
                    count = await client.ReceiveAsync(buffer.AsMemory(), SocketFlags.None).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }

                if (count == 0)
                {
                    return;
                }

                var frames = _counter.Feed(buffer.AsSpan(0, count), rig._captured);
                if (frames > 0)
                {
                    rig.CountFrames(frames);
                }
            }
        }
    }

    /// <summary>Counts whole server WebSocket frames (unmasked) in a byte stream fed in pieces of any size.</summary>
    private sealed class FrameCounter
    {
        private readonly byte[] _header = new byte[10];
        private int _headerBytes;
        private long _payloadLeft = -1;
        private byte[]? _payload;
        private int _payloadBytes;

        public int Feed(ReadOnlySpan<byte> data, ConcurrentQueue<byte[]>? captured)
        {
            var frames = 0;
            while (true)
            {
                if (_payloadLeft < 0)
                {
                    // Reading a header: two bytes, then the extended length they announce.
                    var size = _headerBytes < 2 ? 2 : HeaderSize(_header[1]);
                    var take = Math.Min(size - _headerBytes, data.Length);
                    data[..take].CopyTo(_header.AsSpan(_headerBytes));
                    _headerBytes += take;
                    data = data[take..];
                    if (_headerBytes < size || (size == 2 && HeaderSize(_header[1]) > 2))
                    {
                        if (data.IsEmpty)
                        {
                            return frames;
                        }

                        continue;
                    }

                    var length = _header[1] & 0x7F;
                    _payloadLeft = length == 126 ? BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(2))
                        : length == 127 ? (long)BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(2))
                        : length;
                    _headerBytes = 0;
                    _payload = captured is null ? null : new byte[_payloadLeft];
                    _payloadBytes = 0;
                }

                var step = (int)Math.Min(_payloadLeft, data.Length);
                if (_payload is not null)
                {
                    data[..step].CopyTo(_payload.AsSpan(_payloadBytes));
                    _payloadBytes += step;
                }

                data = data[step..];
                _payloadLeft -= step;
                if (_payloadLeft > 0)
                {
                    return frames;
                }

                frames++;
                _payloadLeft = -1;
                if (_payload is not null)
                {
                    captured?.Enqueue(_payload);
                    _payload = null;
                }

                if (data.IsEmpty)
                {
                    return frames;
                }
            }
        }

        private static int HeaderSize(byte second) => (second & 0x7F) switch
        {
            126 => 4,
            127 => 10,
            _ => 2,
        };
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    private sealed class NoAuthenticator : IRelayAuthenticator
    {
        public AuthResult Authenticate(HttpContext context) => throw new NotSupportedException("the delivery rig sends no requests");

        public AuthResult AuthenticateToken(string token) => throw new NotSupportedException("the delivery rig sends no requests");

        public long KeysVersion => 0;

        public AuthResult Recheck(RelayPrincipal principal) => AuthResult.Success(principal);
    }

    private sealed class RigMeters : IMeterFactory
    {
        private readonly List<Meter> _meters = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(options);
            _meters.Add(meter);
            return meter;
        }

        public void Dispose()
        {
            foreach (var meter in _meters)
            {
                meter.Dispose();
            }
        }
    }
}
