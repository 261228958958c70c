namespace Relay.Kafka;

/// <summary>Options of the Kafka firehose and ingest, bound from <c>Relay:Kafka</c>. Both are off until configured.</summary>
public sealed class KafkaOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Kafka";

    /// <summary>Default channel header: Relay's own header names all start with <c>relay-</c>.</summary>
    public const string DefaultChannelHeader = "relay-channel";

    /// <summary>Default firehose queue: 64 MiB of payloads rides out a few seconds of a slow broker at tens of MB/s.</summary>
    public const int DefaultFirehoseQueueBytes = 64 * 1024 * 1024;

    /// <summary>Default largest ingested record value: the same as the ingress default (<c>Relay:Ingress:MaxMessageBytes</c>).</summary>
    public const int DefaultIngestMaxMessageBytes = 64 * 1024;

    /// <summary>Default records read before one round of publishes and one commit: enough to batch, small enough to redeliver.</summary>
    public const int DefaultIngestBatchSize = 500;

    /// <summary>Default session timeout of an ingest consumer: Kafka's own default (since 3.0).</summary>
    public static readonly TimeSpan DefaultIngestSessionTimeout = TimeSpan.FromSeconds(45);

    /// <summary>Default time librdkafka keeps trying to deliver a firehose record (its own default is 5 minutes).</summary>
    public static readonly TimeSpan DefaultFirehoseMessageTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The brokers (<c>host:9092,host2:9092</c>); required when the firehose or ingest is on.</summary>
    public string? BootstrapServers { get; set; }

    /// <summary>The topic every sequenced message is written to; unset: no firehose.</summary>
    public string? FirehoseTopic { get; set; }

    /// <summary>Payload bytes the firehose may hold waiting for Kafka before it drops new messages (counted, logged).</summary>
    public int FirehoseQueueBytes { get; set; } = DefaultFirehoseQueueBytes;

    /// <summary>How long the producer keeps trying to deliver a record before it counts it as failed.</summary>
    public TimeSpan FirehoseMessageTimeout { get; set; } = DefaultFirehoseMessageTimeout;

    /// <summary>Topics whose records are published into channels; empty: no ingest.</summary>
    public IList<string> IngestTopics { get; } = [];

    /// <summary>The consumer group of the ingest consumers (every process with ingest on shares the partitions).</summary>
    public string? IngestGroupId { get; set; }

    /// <summary>The app ingested records are published in.</summary>
    public string? IngestApp { get; set; }

    /// <summary>The record header that names the channel; a record without it uses its key.</summary>
    public string IngestChannelHeader { get; set; } = DefaultChannelHeader;

    /// <summary>Largest record value ingested; a larger record is counted and skipped.</summary>
    public int IngestMaxMessageBytes { get; set; } = DefaultIngestMaxMessageBytes;

    /// <summary>Records read before they are published and their offsets committed.</summary>
    public int IngestBatchSize { get; set; } = DefaultIngestBatchSize;

    /// <summary>
    /// How long the group waits for a silent consumer before its partitions go to the others; after a consumer leaves,
    /// the group also waits up to this long for the rest to rejoin.
    /// </summary>
    public TimeSpan IngestSessionTimeout { get; set; } = DefaultIngestSessionTimeout;

    /// <summary>Whether the firehose is configured.</summary>
    public bool FirehoseEnabled => !string.IsNullOrEmpty(FirehoseTopic);

    /// <summary>Whether ingest is configured.</summary>
    public bool IngestEnabled => IngestTopics.Count > 0;
}
