using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification;
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

/// <summary>
/// The per-delivery path of one ingress node, wired as the standalone host wires it but without a network:
/// <c>IRelayBus.PublishSequencedAsync</c> (routing's hand-off) → <see cref="FanOutService"/> and its
/// <see cref="InterestTable"/> → <see cref="InMemoryBus"/> → <see cref="IngressNode.OnDeliverAsync"/> →
/// <see cref="LocalSubscriptions"/> → each <see cref="Subscription"/> → each real <see cref="RealtimeConnection"/>,
/// whose <see cref="SocketFrameSender"/> writes the frame into its socket's send buffer (or queues it on its backlog)
/// and has it flushed.
/// </summary>
/// <remarks>
/// Every connection is a <see cref="RigConnection"/>: the real <see cref="RealtimeConnection"/> over a real
/// <see cref="PipeWebSocket"/> and <see cref="SocketFrameSender"/>, as Relay's own transport serves it, its input an
/// in-memory <see cref="Pipe"/> from Kestrel's own block pool (the rig sends no requests), its output one end of a
/// Unix-domain socket pair, whose other end a drain loop reads, counting whole WebSocket frames.
/// <see cref="Deliver(RelayMessage)"/> publishes and returns once every connection's frame is out: read at the other
/// end of its socket, or, when the connections are not run (no receive loop), taken off its backlog on the calling
/// thread as the write loop's <c>TryRead</c> would. So the rig does not depend on what a connection does with a frame
/// (queue it, write it at once, flush it now or later, on this thread or another). Work that stays on the delivering
/// thread shows in <c>GC.GetAllocatedBytesForCurrentThread</c>; work that hops threads only in
/// <c>GC.GetTotalAllocatedBytes</c>.
/// </remarks>
internal sealed class DeliveryRig : IDisposable
{
    public const string App = "bench-app";
    public const string Channel = "bench:room/lobby";
    public const string FirstEpoch = "epoch-0";

    // Kestrel's own factory of transport memory pools: the pipes get the pool a socket's pipes get.
    private static readonly Lazy<IMemoryPoolFactory<byte>> KestrelPools = new(CreateKestrelPools);

    private readonly InMemoryBus _bus = new();
    private readonly MemoryPool<byte> _pool = NewPool();
    private readonly RigMeters _meters = new();
    private readonly IDisposable _fanOutRegistration;
    private readonly IDisposable _nodeRegistration;
    private readonly List<Subscription> _subscriptions = [];
    private readonly List<RigConnection> _connections = [];
    private readonly List<Task> _drains = [];
    private readonly List<Task> _runs = [];
    private readonly DeliveryBatch _burst = new(TimeProvider.System);
    private readonly bool _runConnections;
    private readonly Socket _listener;
    private readonly string _socketPath;
    private long _framesDrained;
    private long _framesTaken;
    private long _framesExpected;
    private ConcurrentQueue<byte[]>? _captured;

    /// <param name="channelSubscribers">Connections subscribed to <see cref="Channel"/> itself.</param>
    /// <param name="patternSubscribers">Further connections subscribed to patterns matching it (<c>bench:room/+</c>, <c>bench:room/#</c> alternately).</param>
    /// <param name="runConnections">Whether the connections run (<c>RunAsync</c>: the receive loop).</param>
    public DeliveryRig(int channelSubscribers, int patternSubscribers = 0, bool runConnections = false)
    {
        _runConnections = runConnections;
        var options = Options.Create(new IngressOptions { NodeId = "bench-node" });
        Node = new IngressNode(_bus, options, Options.Create(new RelayAuthOptions()), new RigAuthenticator(), new NamespacePolicies(new NamespacesOptions()),
            TimeProvider.System, _meters, NullLogger<IngressNode>.Instance);
        FanOut = new FanOutService(_bus, new InterestTable(), _meters, NullLogger<FanOutService>.Instance);

        // Register on the bus directly rather than through StartAsync: the node's once-a-second sweep would ping
        // and then abort these silent peers, and it is not part of a delivery.
        _fanOutRegistration = _bus.ServeFanOut(FanOut);
        _nodeRegistration = _bus.ServeNode(Node.NodeId, Node);

        _socketPath = NewSocketPath();
        _listener = Listen(_socketPath);

        var principal = new RelayPrincipal(App, "bench-key", ClientId: null, Capabilities.AllowAll, ExpiresAt: null, RelayCredentialKind.Key);
        for (var i = 0; i < channelSubscribers + patternSubscribers; i++)
        {
            var connection = new RigConnection(Node, principal, _pool, _listener);
            _connections.Add(connection);
            var pattern = i >= channelSubscribers;
            var channel = !pattern ? Channel : (i % 2 == 0 ? "bench:room/+" : "bench:room/#");
            Subscribe(connection.Realtime, channel, pattern);
        }

        foreach (var connection in _connections)
        {
            _drains.Add(connection.DrainAsync(CountFrames, () => _captured));
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

    /// <summary>WebSocket frames the drain loops have read from the connections' sockets.</summary>
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
    /// its backlog here (connections not run, as the write loop's <c>TryRead</c> would), or read at the other end of
    /// its socket by the drain loop (whoever sent it). Returns how many frames that was; allocates nothing itself.
    /// </summary>
    public long Deliver(RelayMessage message) => Deliver(message, null, inBurst: false);

    /// <summary>
    /// As <see cref="Deliver(RelayMessage)"/>, but published as a realtime connection's receive loop publishes: inside a
    /// <see cref="DeliveryBatch"/>, whose deferred flushes are handed over when the burst ends.
    /// </summary>
    public long DeliverInBurst(RelayMessage message) => Deliver(message, null, inBurst: true);

    /// <summary>As <see cref="Deliver(RelayMessage)"/>, adding the frames read off the backlogs to <paramref name="queued"/>.</summary>
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
                throw new TimeoutException($"the connections' sockets carried {FramesDrained} of {frames} frames in 60 s (connections cut as slow consumers: {Node.SlowConsumerDisconnects})");
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
            // The client goes away: the receive loop ends, the connection drains its sender.
            connection.CloseInput();
        }

        Task.WaitAll([.. _runs], TimeSpan.FromSeconds(30));
        foreach (var connection in _connections)
        {
            connection.CloseOutput();
        }

        Task.WaitAll([.. _drains], TimeSpan.FromSeconds(30));
        _listener.Dispose();
        File.Delete(_socketPath);

        _nodeRegistration.Dispose();
        _fanOutRegistration.Dispose();
        Node.Dispose();
        _meters.Dispose();
        _pool.Dispose();
    }

    /// <summary>A memory pool from Kestrel's own factory: the pool a socket transport's pipes get.</summary>
    public static MemoryPool<byte> NewPool() => KestrelPools.Value.Create(new MemoryPoolOptions { Owner = "relay-bench-micro" });

    /// <summary>A fresh path for a listening Unix-domain socket.</summary>
    public static string NewSocketPath() => Path.Combine(Path.GetTempPath(), $"relay-bench-{Guid.NewGuid():N}.sock");

    /// <summary>A Unix-domain socket listening at <paramref name="path"/>, whose accepted ends the rigs' connections send to.</summary>
    public static Socket Listen(string path)
    {
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(64);
        return listener;
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
            subscription.GoLive(FirstEpoch, 0, static _ => { });
        }

        _subscriptions.Add(subscription);
    }

    private void CountFrames(int frames) => Interlocked.Add(ref _framesDrained, frames);
}
