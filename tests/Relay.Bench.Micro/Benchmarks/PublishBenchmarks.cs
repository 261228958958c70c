using BenchmarkDotNet.Attributes;
using Relay.Bench.Micro.Delivery;

namespace Relay.Bench.Micro.Benchmarks;

/// <summary>
/// A publish through the whole path of a standalone node (<see cref="PublishRig"/>): a burst of 64 masked
/// <c>publish</c> frames written to a publisher connection at once, each parsed, sequenced and stored by routing,
/// delivered to <see cref="Fanout"/> subscriber connections and acknowledged with an <c>ok</c>; an invocation ends when
/// every <c>ok</c> and delivery has been read from the connections' sockets. Figures are per publish.
/// </summary>
[MemoryDiagnoser]
public class PublishBenchmarks
{
    private const int Burst = 64;

    private PublishRig _rig = null!;

    /// <summary>Subscribers of the channel (not named Subscribers: the per-delivery columns would divide by it).</summary>
    [Params(1, 10)]
    public int Fanout { get; set; }

    [GlobalSetup]
    public void Setup() => _rig = new PublishRig(Fanout, Burst);

    [GlobalCleanup]
    public void Cleanup() => _rig.Dispose();

    /// <summary>One burst of 64 publishes, as a client with a window of 64 sends them.</summary>
    [Benchmark(OperationsPerInvoke = Burst)]
    public void PublishInBurstOf64() => _rig.PublishBurst();
}
