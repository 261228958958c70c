using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Relay.Kafka;

/// <summary>The <c>Relay.Kafka</c> meter: what the firehose produced, failed and dropped; what ingest published, skipped and lags.</summary>
public sealed class KafkaMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Relay.Kafka";

    private readonly Counter<long> _produced;
    private readonly Counter<long> _failed;
    private readonly Counter<long> _dropped;
    private readonly Counter<long> _ingested;
    private readonly Counter<long> _ingestErrors;
    private readonly ConcurrentDictionary<(string Topic, int Partition), long> _lag = new();

    /// <summary>Creates the meter and its instruments.</summary>
    public KafkaMetrics(IMeterFactory meters)
    {
        ArgumentNullException.ThrowIfNull(meters);
        var meter = meters.Create(MeterName);
        _produced = meter.CreateCounter<long>("relay.kafka.firehose.produced", description: "Firehose records Kafka acknowledged.");
        _failed = meter.CreateCounter<long>("relay.kafka.firehose.failed", description: "Firehose records Kafka did not take within Relay:Kafka:FirehoseMessageTimeout (or refused).");
        _dropped = meter.CreateCounter<long>("relay.kafka.firehose.dropped", description: "Sequenced messages the firehose dropped because its queue (Relay:Kafka:FirehoseQueueBytes) was full.");
        _ingested = meter.CreateCounter<long>("relay.kafka.ingest.published", description: "Ingested records routing acknowledged (a redelivered one that dedupe absorbed counts again).");
        _ingestErrors = meter.CreateCounter<long>("relay.kafka.ingest.errors", description: "Ingested records skipped (reason: no_channel, bad_channel, too_large, refused) and failed publishes or commits (reason: publish, commit).");
        meter.CreateObservableGauge("relay.kafka.ingest.lag", ObserveLag, unit: "{record}", description: "Records in a partition past the last one ingest published (high watermark less the next offset), per topic and partition.");
    }

    internal void Produced() => _produced.Add(1);

    internal void Failed() => _failed.Add(1);

    internal void Dropped() => _dropped.Add(1);

    internal void Ingested(int count) => _ingested.Add(count);

    internal void IngestError(string reason) => _ingestErrors.Add(1, new KeyValuePair<string, object?>("reason", reason));

    internal void Lag(string topic, int partition, long lag) => _lag[(topic, partition)] = Math.Max(0, lag);

    internal void ForgetLag(string topic, int partition) => _lag.TryRemove((topic, partition), out _);

    private IEnumerable<Measurement<long>> ObserveLag()
    {
        foreach (var ((topic, partition), lag) in _lag)
        {
            yield return new Measurement<long>(lag, new KeyValuePair<string, object?>("topic", topic), new KeyValuePair<string, object?>("partition", partition));
        }
    }
}
