using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus;
using Relay.Bus.Routing;
using Relay.Core.Channels;
using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Kafka;

/// <summary>
/// Publishes the records of <see cref="KafkaOptions.IngestTopics"/> into channels of <see cref="KafkaOptions.IngestApp"/>
/// through routing, as an HTTP publish does (seq, history and dedupe apply). At least once: a batch's offsets are
/// committed only after routing acknowledged every record of it, so a crash redelivers, and the message id (the record's
/// <c>relay-id</c> header, or one made of topic, partition and offset) lets routing drop what it already holds.
/// </summary>
public sealed partial class KafkaIngest : BackgroundService
{
    /// <summary>Messages per publish request: a channel's run of records goes to routing in a few requests, not one each.</summary>
    private const int MaxItemsPerPublish = 100;

    /// <summary>Longest topic used as is in a made-up message id (ids are at most 64 characters).</summary>
    private const int MaxTopicInId = 24;

    /// <summary>First and longest wait before a publish routing could not take is tried again.</summary>
    private static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan LastRetry = TimeSpan.FromSeconds(5);

    /// <summary>How long a consumer that could not be made or failed waits before it starts again.</summary>
    private static readonly TimeSpan RestartDelay = TimeSpan.FromSeconds(5);

    private readonly KafkaOptions _options;
    private readonly IRelayBus _bus;
    private readonly KafkaMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<KafkaIngest> _logger;
    private readonly Dictionary<string, string> _topicTags = new(StringComparer.Ordinal);

    /// <summary>Creates the consumer's host; it does nothing unless <see cref="KafkaOptions.IngestTopics"/> is set.</summary>
    public KafkaIngest(IOptions<KafkaOptions> options, IRelayBus bus, KafkaMetrics metrics, TimeProvider time, ILogger<KafkaIngest> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _bus = bus;
        _metrics = metrics;
        _time = time;
        _logger = logger;
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_options.IngestEnabled)
        {
            return;
        }

        // Consume blocks its thread: the loop runs on its own, off the host's start.
        try
        {
            await Task.Run(() => RunAsync(stoppingToken), stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await ConsumeAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is KafkaException or InvalidOperationException or ArgumentException)
            {
                LogConsumerFailed(_logger, e);
                await Task.Delay(RestartDelay, _time, stoppingToken).ConfigureAwait(false);
            }
        }
    }

    private async Task ConsumeAsync(CancellationToken stoppingToken)
    {
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = _options.BootstrapServers,
            GroupId = _options.IngestGroupId,
            ClientId = "relay-ingest",
            EnableAutoCommit = false,
            SessionTimeoutMs = (int)_options.IngestSessionTimeout.TotalMilliseconds,

            // A new group starts at the oldest record: nothing written before Relay first ran is skipped.
            AutoOffsetReset = AutoOffsetReset.Earliest,
        })
            .SetKeyDeserializer(Deserializers.ByteArray)
            .SetValueDeserializer(Deserializers.ByteArray)
            .SetErrorHandler((_, error) => LogBrokerError(_logger, error.Code.ToString(), error.Reason))
            .SetLogHandler((_, log) => LogLibrdkafka(_logger, log.Facility, log.Message))
            .SetPartitionsRevokedHandler((_, partitions) => Forget(partitions.Select(static p => p.TopicPartition)))
            .SetPartitionsLostHandler((_, partitions) => Forget(partitions.Select(static p => p.TopicPartition)))
            .Build();
        consumer.Subscribe(_options.IngestTopics);
        LogStarted(_logger, string.Join(',', _options.IngestTopics), _options.IngestGroupId!, _options.IngestApp!);
        try
        {
            var batch = new List<ConsumeResult<byte[]?, byte[]?>>(_options.IngestBatchSize);
            while (!stoppingToken.IsCancellationRequested)
            {
                batch.Clear();
                batch.Add(consumer.Consume(stoppingToken));
                while (batch.Count < _options.IngestBatchSize && consumer.Consume(TimeSpan.Zero) is { } more)
                {
                    batch.Add(more);
                }

                await PublishAsync(batch, stoppingToken).ConfigureAwait(false);
                Commit(consumer, batch);
            }
        }
        finally
        {
            // Leaves the group at once, so another consumer (or this one restarted) takes the partitions without waiting
            // for the session to time out. A batch cut short by stopping was not committed: it comes again.
            consumer.Close();
        }
    }

    private async Task PublishAsync(List<ConsumeResult<byte[]?, byte[]?>> batch, CancellationToken stoppingToken)
    {
        // A channel's records keep their order (one partition's records come in order); channels go to routing side by side.
        var channels = new Dictionary<string, List<PublishItem>>(StringComparer.Ordinal);
        var traceParents = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var record in batch)
        {
            if (TryRead(record, out var channel, out var item, out var traceParent))
            {
                if (!channels.TryGetValue(channel, out var items))
                {
                    channels[channel] = items = [];
                    traceParents[channel] = traceParent;
                }

                items.Add(item);
            }
        }

        var publishes = new List<Task>(channels.Count);
        foreach (var (channel, items) in channels)
        {
            publishes.Add(PublishChannelAsync(channel, items, traceParents[channel], stoppingToken));
        }

        await Task.WhenAll(publishes).ConfigureAwait(false);
    }

    private async Task PublishChannelAsync(string channel, List<PublishItem> items, string? traceParent, CancellationToken stoppingToken)
    {
        for (var start = 0; start < items.Count; start += MaxItemsPerPublish)
        {
            var chunk = items.GetRange(start, Math.Min(MaxItemsPerPublish, items.Count - start));
            var request = new PublishRequest(_options.IngestApp!, channel, chunk, ClientId: null, traceParent);
            var wait = FirstRetry;
            while (true)
            {
                stoppingToken.ThrowIfCancellationRequested();
                RoutingReply? reply = null;
                try
                {
                    reply = await _bus.SendToRoutingAsync(request, stoppingToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                {
                    LogPublishFailed(_logger, channel, e.Message);
                }

                if (reply is PublishReply)
                {
                    _metrics.Ingested(chunk.Count);
                    break;
                }

                if (reply is ErrorReply { Error.Code: < ErrorCodes.Internal } refused)
                {
                    // Refused for what the records hold, not for the moment: trying again would stall the partition for ever.
                    for (var i = 0; i < chunk.Count; i++)
                    {
                        _metrics.IngestError("refused");
                    }

                    LogRefused(_logger, chunk.Count, channel, refused.Error.Code, refused.Error.Message);
                    break;
                }

                if (reply is ErrorReply failed)
                {
                    LogPublishFailed(_logger, channel, failed.Error.Message);
                }

                // Routing away or busy: the same request again (its ids make a second copy harmless), slower each time.
                _metrics.IngestError("publish");
                await Task.Delay(wait, _time, stoppingToken).ConfigureAwait(false);
                wait = TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, LastRetry.Ticks));
            }
        }
    }

    private bool TryRead(ConsumeResult<byte[]?, byte[]?> record, out string channel, out PublishItem item, out string? traceParent)
    {
        item = default;
        traceParent = null;
        var headers = record.Message.Headers;
        channel = Header(headers, _options.IngestChannelHeader) ?? (record.Message.Key is { Length: > 0 } key ? Encoding.UTF8.GetString(key) : string.Empty);
        if (channel.Length == 0)
        {
            return Skip(record, "no_channel", $"no '{_options.IngestChannelHeader}' header and no key");
        }

        if (!ChannelName.IsValidName(channel, out var invalid))
        {
            return Skip(record, "bad_channel", invalid);
        }

        var value = record.Message.Value ?? [];
        if (value.Length > _options.IngestMaxMessageBytes)
        {
            return Skip(record, "too_large", $"{value.Length} bytes, over Relay:Kafka:IngestMaxMessageBytes ({_options.IngestMaxMessageBytes})");
        }

        if (value.Length == 0)
        {
            return Skip(record, "empty", "no value");
        }

        var id = Header(headers, KafkaHeaders.Id);
        if (id is { Length: 0 or > 64 })
        {
            return Skip(record, "bad_id", $"'{KafkaHeaders.Id}' must be 1 to 64 characters");
        }

        id ??= $"kafka:{TopicTag(record.Topic)}:{record.Partition.Value}:{record.Offset.Value}";
        var json = Header(headers, KafkaHeaders.Encoding) != "binary" && JsonPayload.IsOneValue(value);
        item = new PublishItem(Header(headers, KafkaHeaders.Name), value, json, id);
        traceParent = Header(headers, KafkaHeaders.TraceParent);
        return true;
    }

    private bool Skip(ConsumeResult<byte[]?, byte[]?> record, string reason, string detail)
    {
        _metrics.IngestError(reason);
        LogSkipped(_logger, record.Topic, record.Partition.Value, record.Offset.Value, reason, detail);
        return false;
    }

    private static string? Header(Headers? headers, string name) =>
        headers is not null && headers.TryGetLastBytes(name, out var bytes) ? Encoding.UTF8.GetString(bytes) : null;

    private string TopicTag(string topic)
    {
        if (topic.Length <= MaxTopicInId)
        {
            return topic;
        }

        if (!_topicTags.TryGetValue(topic, out var tag))
        {
            _topicTags[topic] = tag = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(topic)), 0, 8);
        }

        return tag;
    }

    private void Commit(IConsumer<byte[]?, byte[]?> consumer, List<ConsumeResult<byte[]?, byte[]?>> batch)
    {
        // The next offset of each partition's last record: everything before it in that partition was acknowledged.
        var next = new Dictionary<TopicPartition, long>();
        foreach (var record in batch)
        {
            next[record.TopicPartition] = record.Offset.Value + 1;
        }

        try
        {
            consumer.Commit(next.Select(static p => new TopicPartitionOffset(p.Key, p.Value)));
        }
        catch (KafkaException e)
        {
            // Not committed: these records come again after a rebalance or restart, and routing's dedupe absorbs them.
            _metrics.IngestError("commit");
            LogCommitFailed(_logger, e.Error.Reason);
        }

        foreach (var (partition, offset) in next)
        {
            var high = consumer.GetWatermarkOffsets(partition).High;
            if (high != Offset.Unset)
            {
                _metrics.Lag(partition.Topic, partition.Partition.Value, high.Value - offset);
            }
        }
    }

    private void Forget(IEnumerable<TopicPartition> partitions)
    {
        foreach (var partition in partitions)
        {
            _metrics.ForgetLag(partition.Topic, partition.Partition.Value);
        }
    }

    [LoggerMessage(EventId = 3100, Level = LogLevel.Information, Message = "Kafka ingest consuming {Topics} in group {Group} into app {App}")]
    private static partial void LogStarted(ILogger logger, string topics, string group, string app);

    [LoggerMessage(EventId = 3101, Level = LogLevel.Warning, Message = "Kafka ingest skipped the record at {Topic}/{Partition}@{Offset} ({Reason}): {Detail}")]
    private static partial void LogSkipped(ILogger logger, string topic, int partition, long offset, string reason, string detail);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Warning, Message = "Kafka ingest: routing refused {Count} records for channel {Channel} ({Code} {Reason}); skipped")]
    private static partial void LogRefused(ILogger logger, int count, string channel, int code, string reason);

    [LoggerMessage(EventId = 3103, Level = LogLevel.Warning, Message = "Kafka ingest could not publish to channel {Channel}, trying again: {Reason}")]
    private static partial void LogPublishFailed(ILogger logger, string channel, string reason);

    [LoggerMessage(EventId = 3104, Level = LogLevel.Warning, Message = "Kafka ingest could not commit its offsets (the records will come again and be deduplicated): {Reason}")]
    private static partial void LogCommitFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 3105, Level = LogLevel.Error, Message = "Kafka ingest consumer failed; starting it again in 5 s")]
    private static partial void LogConsumerFailed(ILogger logger, Exception error);

    [LoggerMessage(EventId = 3106, Level = LogLevel.Warning, Message = "Kafka ingest consumer: {Code} {Reason}")]
    private static partial void LogBrokerError(ILogger logger, string code, string reason);

    [LoggerMessage(EventId = 3107, Level = LogLevel.Debug, Message = "librdkafka {Facility}: {Message}")]
    private static partial void LogLibrdkafka(ILogger logger, string facility, string message);
}
