using System.Diagnostics.Metrics;
using System.Numerics;

namespace Relay.Ingress;

/// <summary>
/// The ingress meter. Hot-path counts are plain interlocked fields (one add per message per node, never per
/// subscriber), exposed as observable instruments so recording costs nothing when nobody listens. The two
/// per-frame counts (frames out, frames queued) are striped by core, so fan-out and write loops running on
/// every core do not contend on one cache line.
/// </summary>
internal sealed class IngressMetrics
{
    public const string MeterName = "Relay.Ingress";

    private readonly Histogram<double> _publishToDeliver;
    private readonly StripedCounter _framesOut = new();
    private readonly StripedCounter _framesQueued = new();
    private long _messagesIn;
    private long _deliveries;
    private long _slowConsumers;
    private long _quietCatchUps;

    public IngressMetrics(IMeterFactory meters, Func<int> connections, Func<(long Repaired, long Unrepaired)>? gaps = null)
    {
        var meter = meters.Create(MeterName);
        meter.CreateObservableGauge("relay.ingress.connections", connections, description: "Open client connections (WebSocket and SSE).");
        meter.CreateObservableCounter("relay.ingress.messages_in", () => Interlocked.Read(ref _messagesIn), description: "Messages published through this node.");
        meter.CreateObservableCounter("relay.ingress.deliveries", () => Interlocked.Read(ref _deliveries), description: "Messages queued to subscribers on this node.");
        meter.CreateObservableCounter("relay.ingress.messages_out", _framesOut.Sum, description: "Frames written to clients: messages (live and replayed), replies and control frames; a coalesced WebSocket batch counts each frame.");
        meter.CreateObservableGauge("relay.ingress.queued_messages", () => Math.Max(0, _framesQueued.Sum()), description: "Frames waiting in connections' outbound queues (a backlog: frames written straight to the transport never wait there).");
        if (gaps is not null)
        {
            meter.CreateObservableCounter("relay.ingress.gap_messages_repaired", () => gaps().Repaired, description: "Messages (and presence events) lost on the bus and read back from history (the kept presence events) before the channel went on.");
            meter.CreateObservableCounter("relay.ingress.gap_quiet_catchups", () => Interlocked.Read(ref _quietCatchUps), description: "Channels a quiet check found behind their position at this node: deliveries lost with nothing after them to show it, and no resync that said so (read back; each is also logged, event 1005).");
            meter.CreateObservableCounter("relay.ingress.gap_messages_unrepaired", () => gaps().Unrepaired, description: "Messages (and presence events) lost on the bus that history (the kept presence events) no longer held: clients recover with since, or see the gap.");
        }

        meter.CreateObservableCounter("relay.ingress.slow_consumer_disconnects", () => Interlocked.Read(ref _slowConsumers), description: "Connections cut because their outbound queue was full.");
        _publishToDeliver = meter.CreateHistogram<double>("relay.ingress.publish_to_deliver", unit: "s", description: "From routing's timestamp to this node's dispatch.");
    }

    public long SlowConsumers => Interlocked.Read(ref _slowConsumers);

    public void Published(int count) => Interlocked.Add(ref _messagesIn, count);

    public void SlowConsumer() => Interlocked.Increment(ref _slowConsumers);

    /// <summary>A quiet check found a channel behind its position here.</summary>
    public void QuietCatchUp() => Interlocked.Increment(ref _quietCatchUps);

    /// <summary>A frame went straight into a connection's transport.</summary>
    public void FrameSent() => _framesOut.Add(1);

    /// <summary>A frame was added to a connection's outbound queue.</summary>
    public void FrameQueued() => _framesQueued.Add(1);

    /// <summary>A queued frame was taken for writing.</summary>
    public void FrameDequeued()
    {
        _framesQueued.Add(-1);
        _framesOut.Add(1);
    }

    /// <summary>Queued frames were dropped unsent (a slow consumer's backlog, or a closed connection's leftovers).</summary>
    public void FramesDropped(int count) => _framesQueued.Add(-count);

    public void Dispatched(int subscribers, long timestampMs, long nowMs)
    {
        if (subscribers > 0)
        {
            Interlocked.Add(ref _deliveries, subscribers);
        }

        if (_publishToDeliver.Enabled)
        {
            _publishToDeliver.Record(Math.Max(0, nowMs - timestampMs) / 1000.0);
        }
    }

    /// <summary>
    /// A count kept in one cache line per core and summed when read: adds stay cheap when every core makes them.
    /// A sum taken while adds run may be off by the adds in flight (a queue depth can read below zero for a moment).
    /// </summary>
    private sealed class StripedCounter
    {
        // 8 longs = 64 bytes: one stripe per cache line; stripe 0 starts a line past the array's header.
        private const int Spacing = 8;

        private readonly long[] _cells;
        private readonly int _mask;

        public StripedCounter()
        {
            var stripes = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Clamp(Environment.ProcessorCount, 1, 64));
            _mask = stripes - 1;
            _cells = new long[(stripes + 1) * Spacing];
        }

        public void Add(long value) => Interlocked.Add(ref _cells[((Thread.GetCurrentProcessorId() & _mask) + 1) * Spacing], value);

        public long Sum()
        {
            var sum = 0L;
            for (var i = Spacing; i < _cells.Length; i += Spacing)
            {
                sum += Interlocked.Read(ref _cells[i]);
            }

            return sum;
        }
    }
}
