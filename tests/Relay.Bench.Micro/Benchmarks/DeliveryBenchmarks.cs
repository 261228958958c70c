using BenchmarkDotNet.Attributes;
using Relay.Bench.Micro.Delivery;

namespace Relay.Bench.Micro.Benchmarks;

/// <summary>
/// One message delivered to N local subscribers of one channel through the node's real path: routing's hand-off →
/// fan-out (interest table) → the node → local subscriptions → each real <c>RealtimeConnection</c> over a
/// <c>PipeWebSocket</c> and <c>SocketFrameSender</c>, sending straight to its socket as on Relay's own transport: one
/// end of a Unix-domain socket pair, read at the other end. An operation ends when every subscriber's frame has been
/// received there, so it includes the deferred flush on the thread pool and the kernel's send and receive. One
/// operation is one message, i.e. <see cref="Subscribers"/> deliveries: the ns/delivery and B/delivery columns divide
/// by it. At most 1,000 subscribers: each needs two file descriptors, and this machine allows 20,000 per process.
/// </summary>
[MemoryDiagnoser]
public class DeliveryBenchmarks
{
    private DeliveryRig _rig = null!;
    private MessageRing _ring = null!;
    private long _seq;

    [Params(1, 100, 1_000)]
    public int Subscribers { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _rig = new DeliveryRig(Subscribers);
        _ring = new MessageRing();
    }

    [GlobalCleanup]
    public void Cleanup() => _rig.Dispose();

    /// <summary>Steady state: the message's frame is already encoded (as after its first subscriber). Budget: 0 B.</summary>
    [Benchmark(Baseline = true)]
    public long Deliver() => _rig.Deliver(_ring.Next());

    /// <summary>As <see cref="Deliver"/>, published inside a connection's burst (a <c>DeliveryBatch</c>), as a WebSocket publish is.</summary>
    [Benchmark]
    public long DeliverInBurst() => _rig.DeliverInBurst(_ring.Next());

    /// <summary>A new message each time: allocating it and encoding its frame once, whatever the subscriber count.</summary>
    [Benchmark]
    public long DeliverNewMessage() => _rig.Deliver(DeliveryRig.NewMessage(++_seq, "epoch-new"));
}
