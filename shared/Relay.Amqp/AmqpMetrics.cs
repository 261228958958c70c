using System.Diagnostics.Metrics;

namespace Relay.Amqp;

/// <summary>
/// The <c>Relay.Amqp</c> meter: what outbound published, the broker confirmed, and outbound dropped or buffers; what
/// inbound consumed, routing took, and what either side refused or lost.
/// </summary>
public sealed class AmqpMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Relay.Amqp";

    private readonly Counter<long> _published;
    private readonly Counter<long> _confirmed;
    private readonly Counter<long> _dropped;
    private readonly Counter<long> _outboundErrors;
    private readonly Counter<long> _consumed;
    private readonly Counter<long> _ingested;
    private readonly Counter<long> _inboundErrors;
    private Func<long>? _buffered;
    private int _outboundConnected;
    private int _inboundConnected;

    /// <summary>Creates the meter and its instruments.</summary>
    public AmqpMetrics(IMeterFactory meters)
    {
        ArgumentNullException.ThrowIfNull(meters);
        var meter = meters.Create(MeterName);
        _published = meter.CreateCounter<long>("relay.amqp.outbound.published", description: "Messages outbound sent to the exchange (one published again after a nack or a lost connection counts again).");
        _confirmed = meter.CreateCounter<long>("relay.amqp.outbound.confirmed", description: "Outbound messages the broker confirmed (publisher confirms).");
        _dropped = meter.CreateCounter<long>("relay.amqp.outbound.dropped", description: "Sequenced messages outbound dropped because its buffer (Relay:Amqp:OutboundQueueBytes) was full.");
        _outboundErrors = meter.CreateCounter<long>("relay.amqp.outbound.errors", description: "Outbound failures by reason: nack (published again), connection (lost or refused; what was unconfirmed is published again), routing_key (over 255 bytes, skipped).");
        meter.CreateObservableGauge("relay.amqp.outbound.buffered", () => _buffered?.Invoke() ?? 0, unit: "By", description: "Payload bytes outbound holds: queued, or published and not yet confirmed.");
        _consumed = meter.CreateCounter<long>("relay.amqp.inbound.consumed", description: "Deliveries inbound received from the queue (a redelivery counts again).");
        _ingested = meter.CreateCounter<long>("relay.amqp.inbound.published", description: "Deliveries routing acknowledged and inbound then acked (one deduplicated by its message id counts again).");
        _inboundErrors = meter.CreateCounter<long>("relay.amqp.inbound.errors", description: "Inbound deliveries rejected (reason: no_channel, bad_channel, too_large, empty, bad_id, refused), requeued (routing could not take them now), or lost with the connection (connection).");
        meter.CreateObservableGauge("relay.amqp.connected", ObserveConnected, description: "1 while the direction's connection to the broker is open, per direction (outbound, inbound); 0 while it reconnects.");
    }

    internal void Published() => _published.Add(1);

    internal void Confirmed(int count) => _confirmed.Add(count);

    internal void Dropped() => _dropped.Add(1);

    internal void OutboundError(string reason) => _outboundErrors.Add(1, new KeyValuePair<string, object?>("reason", reason));

    internal void Consumed() => _consumed.Add(1);

    internal void Ingested(int count) => _ingested.Add(count);

    internal void InboundError(string reason, int count = 1) => _inboundErrors.Add(count, new KeyValuePair<string, object?>("reason", reason));

    internal void ObserveBuffered(Func<long> buffered) => _buffered = buffered;

    internal void OutboundConnected(bool connected) => Volatile.Write(ref _outboundConnected, connected ? 1 : 0);

    internal void InboundConnected(bool connected) => Volatile.Write(ref _inboundConnected, connected ? 1 : 0);

    private IEnumerable<Measurement<int>> ObserveConnected()
    {
        yield return new Measurement<int>(Volatile.Read(ref _outboundConnected), new KeyValuePair<string, object?>("direction", "outbound"));
        yield return new Measurement<int>(Volatile.Read(ref _inboundConnected), new KeyValuePair<string, object?>("direction", "inbound"));
    }
}
