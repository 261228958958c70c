using System.Diagnostics.Metrics;

namespace Relay.Ingress;

/// <summary>
/// The ingress meter. Hot-path counts are plain interlocked fields (one add per message per node, never per
/// subscriber), exposed as observable instruments so recording costs nothing when nobody listens.
/// </summary>
internal sealed class IngressMetrics
{
    public const string MeterName = "Relay.Ingress";

    private readonly Histogram<double> _publishToDeliver;
    private long _messagesIn;
    private long _deliveries;
    private long _slowConsumers;

    public IngressMetrics(IMeterFactory meters, Func<int> connections)
    {
        var meter = meters.Create(MeterName);
        meter.CreateObservableGauge("relay.ingress.connections", connections, description: "Open client connections (WebSocket and SSE).");
        meter.CreateObservableCounter("relay.ingress.messages_in", () => Interlocked.Read(ref _messagesIn), description: "Messages published through this node.");
        meter.CreateObservableCounter("relay.ingress.deliveries", () => Interlocked.Read(ref _deliveries), description: "Messages queued to subscribers on this node.");
        meter.CreateObservableCounter("relay.ingress.slow_consumer_disconnects", () => Interlocked.Read(ref _slowConsumers), description: "Connections cut because their outbound queue was full.");
        _publishToDeliver = meter.CreateHistogram<double>("relay.ingress.publish_to_deliver", unit: "s", description: "From routing's timestamp to this node's dispatch.");
    }

    public long SlowConsumers => Interlocked.Read(ref _slowConsumers);

    public void Published(int count) => Interlocked.Add(ref _messagesIn, count);

    public void SlowConsumer() => Interlocked.Increment(ref _slowConsumers);

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
}
