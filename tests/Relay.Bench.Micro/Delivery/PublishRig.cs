using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification;
using Relay.Bus.InMemory;
using Relay.Core.Auth;
using Relay.Core.Namespaces;
using Relay.FanOut;
using Relay.FanOut.Interest;
using Relay.Ingress;
using Relay.Ingress.Subscriptions;
using Relay.Routing.Channels;

namespace Relay.Bench.Micro.Delivery;

/// <summary>
/// The whole publish path of a standalone node, without a network: a publisher's <see cref="Relay.Ingress.Realtime.RealtimeConnection"/>
/// reads masked <c>publish</c> frames from its transport, parses them, routing (<see cref="ChannelAuthority"/>) sequences
/// and stores each one, fan-out and the node hand it to every subscriber connection, and the publisher is sent its
/// <c>ok</c>. <see cref="PublishBurst"/> writes a burst of publishes as one client write (as a load generator with a
/// window does) and returns once every <c>ok</c> and every delivery has left the connections.
/// </summary>
/// <remarks>
/// The rig wires what the standalone host wires (the in-memory bus, routing, fan-out, one ingress node, real connections
/// over real <see cref="Relay.Ingress.WebSockets.PipeWebSocket"/>s); only the client side is the rig's. So what it
/// measures per publish (time on this machine, bytes allocated by the process) is the server's, minus the kernel's
/// receive path, and it sees anything added to the path, wherever it is added.
/// </remarks>
internal sealed class PublishRig : IDisposable
{
    public const string App = "bench-app";
    public const string Channel = "bench:room/lobby";

    private readonly InMemoryBus _bus = new();
    private readonly MemoryPool<byte> _pool = DeliveryRig.NewPool();
    private readonly RigMeters _meters = new();
    private readonly IngressNode _node;
    private readonly ChannelAuthority _routing;
    private readonly IDisposable[] _registrations;
    private readonly RigConnection _publisher;
    private readonly List<RigConnection> _subscribers = [];
    private readonly List<Subscription> _subscriptions = [];
    private readonly List<Task> _tasks = [];
    private readonly Socket _listener;
    private readonly string _socketPath;
    private readonly byte[] _burst;
    private readonly int _burstSize;
    private readonly ManualResetEventSlim _done = new(initialState: false, spinCount: 1);
    private long _replies;
    private long _deliveries;
    private long _repliesExpected;
    private long _deliveriesExpected;

    /// <param name="subscribers">Connections subscribed to <see cref="Channel"/>.</param>
    /// <param name="burstSize">Publishes per client write (the load generator's window).</param>
    /// <param name="payloadBytes">Size of each publish's <c>data</c> (a JSON string).</param>
    public PublishRig(int subscribers, int burstSize = 64, int payloadBytes = 100)
    {
        var options = Options.Create(new IngressOptions
        {
            NodeId = "bench-node",
            // The rig measures the path, not the per-connection limit (as the macro benchmark raises it too).
            PublishRatePerSecond = 100_000_000,
            PublishBurst = 100_000_000,
        });
        var namespaces = new NamespacePolicies(new NamespacesOptions());
        _node = new IngressNode(_bus, options, Options.Create(new RelayAuthOptions()), new RigAuthenticator(), namespaces, TimeProvider.System, _meters, NullLogger<IngressNode>.Instance);
        _routing = new ChannelAuthority(_bus, TimeProvider.System, namespaces);
        var fanOut = new FanOutService(_bus, new InterestTable(), _meters, NullLogger<FanOutService>.Instance);

        // Registered on the bus directly rather than through the hosted services: their background loops (the node's
        // once-a-second sweep, routing's idle sweep) are not part of a publish.
        _registrations = [_bus.ServeRouting(_routing), _bus.ServeFanOut(fanOut), _bus.ServeNode(_node.NodeId, _node)];

        _socketPath = DeliveryRig.NewSocketPath();
        _listener = DeliveryRig.Listen(_socketPath);

        var principal = new RelayPrincipal(App, "bench-key", ClientId: "publisher", Capabilities.AllowAll, ExpiresAt: null, RelayCredentialKind.Key);
        _publisher = new RigConnection(_node, principal, _pool, _listener);
        for (var i = 0; i < subscribers; i++)
        {
            var subscriber = new RigConnection(_node, principal with { ClientId = null }, _pool, _listener);
            _subscribers.Add(subscriber);

            // What IngressNode.StartSubscriptionAsync does once routing has answered: the channel has no messages yet.
            var subscription = new Subscription(subscriber.Realtime, App, Channel, isPattern: false);
            Wait(_node.AddSubscriptionAsync(subscription));
            subscription.GoLive("none-yet", 0, static _ => { });
            _subscriptions.Add(subscription);
        }

        // Each connection sends its 'connected' first.
        _repliesExpected = 1;
        _deliveriesExpected = subscribers;
        _tasks.Add(_publisher.DrainAsync(OnReplies, static () => null));
        foreach (var subscriber in _subscribers)
        {
            _tasks.Add(subscriber.DrainAsync(OnDeliveries, static () => null));
        }

        // Every connection runs (its receive loop; a write loop starts only if a backlog forms).
        _tasks.Add(_publisher.Realtime.RunAsync());
        foreach (var subscriber in _subscribers)
        {
            _tasks.Add(subscriber.Realtime.RunAsync());
        }

        WaitForFrames();

        _burstSize = burstSize;
        _burst = BurstOf(burstSize, payloadBytes);
    }

    /// <summary>Subscriber connections.</summary>
    public int Subscribers => _subscribers.Count;

    /// <summary>Publishes per <see cref="PublishBurst"/>.</summary>
    public int BurstSize => _burstSize;

    /// <summary>
    /// Writes one burst of <see cref="BurstSize"/> publishes into the publisher's transport at once and waits until
    /// each has its <c>ok</c> and every subscriber has been sent each message.
    /// </summary>
    public void PublishBurst()
    {
        Interlocked.Add(ref _repliesExpected, _burstSize);
        Interlocked.Add(ref _deliveriesExpected, (long)_burstSize * _subscribers.Count);
        var input = _publisher.Input;
        input.Write(_burst);
        var flushing = input.FlushAsync();
        if (!flushing.IsCompletedSuccessfully)
        {
            flushing.AsTask().GetAwaiter().GetResult();
        }

        WaitForFrames();
    }

    public void Dispose()
    {
        foreach (var subscription in _subscriptions)
        {
            Wait(_node.RemoveSubscriptionAsync(subscription));
        }

        // The clients go away: the receive loops end, the connections drain their senders.
        _publisher.CloseInput();
        foreach (var subscriber in _subscribers)
        {
            subscriber.CloseInput();
        }

        Task.WaitAll([.. _tasks.Skip(1 + _subscribers.Count)], TimeSpan.FromSeconds(30));
        _publisher.CloseOutput();
        foreach (var subscriber in _subscribers)
        {
            subscriber.CloseOutput();
        }

        Task.WaitAll([.. _tasks.Take(1 + _subscribers.Count)], TimeSpan.FromSeconds(30));
        _listener.Dispose();
        File.Delete(_socketPath);

        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }

        _node.Dispose();
        _meters.Dispose();
        _done.Dispose();
        _pool.Dispose();
    }

    // `count` client frames, masked as a client must mask them (a fixed non-zero key: unmasking is real work).
    private static byte[] BurstOf(int count, int payloadBytes)
    {
        var frames = new List<byte>();
        var mask = new byte[] { 0x5a, 0xc3, 0x81, 0x7e };
        for (var i = 0; i < count; i++)
        {
            var json = Encoding.UTF8.GetBytes($"{{\"type\":\"publish\",\"channel\":\"{Channel}\",\"data\":\"{new string('x', payloadBytes - 2)}\",\"ref\":{i + 1}}}");
            frames.Add(0x81);
            if (json.Length < 126)
            {
                frames.Add((byte)(0x80 | json.Length));
            }
            else
            {
                frames.Add(0x80 | 126);
                var length = new byte[2];
                BinaryPrimitives.WriteUInt16BigEndian(length, (ushort)json.Length);
                frames.AddRange(length);
            }

            frames.AddRange(mask);
            for (var j = 0; j < json.Length; j++)
            {
                frames.Add((byte)(json[j] ^ mask[j & 3]));
            }
        }

        return [.. frames];
    }

    // Waits until every expected reply and delivery has been read. It blocks rather than spins, so the process's CPU
    // time is the path's (and the rig's reading), not a waiting thread's.
    private void WaitForFrames()
    {
        var deadline = Environment.TickCount64 + 60_000;
        while (!Done)
        {
            _done.Wait(TimeSpan.FromSeconds(1));
            _done.Reset();
            if (!Done && Environment.TickCount64 > deadline)
            {
                throw new TimeoutException($"in 60 s the publisher was sent {Volatile.Read(ref _replies)} of {Volatile.Read(ref _repliesExpected)} frames and the subscribers {Volatile.Read(ref _deliveries)} of {Volatile.Read(ref _deliveriesExpected)} (cut as slow consumers: {_node.SlowConsumerDisconnects})");
            }
        }
    }

    private bool Done => Volatile.Read(ref _replies) >= Volatile.Read(ref _repliesExpected) && Volatile.Read(ref _deliveries) >= Volatile.Read(ref _deliveriesExpected);

    private void OnReplies(int frames)
    {
        Interlocked.Add(ref _replies, frames);
        if (Done)
        {
            _done.Set();
        }
    }

    private void OnDeliveries(int frames)
    {
        Interlocked.Add(ref _deliveries, frames);
        if (Done)
        {
            _done.Set();
        }
    }

    private static void Wait(ValueTask task)
    {
        if (!task.IsCompletedSuccessfully)
        {
            task.AsTask().GetAwaiter().GetResult();
        }
    }
}
