using System.Globalization;
using System.Text;
using System.Threading.Channels;
using Confluent.Kafka;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus.FanOut;
using Relay.Core.Messages;

namespace Relay.Kafka;

/// <summary>
/// Writes every sequenced message fan-out sees to <see cref="KafkaOptions.FirehoseTopic"/>: key <c>app/channel</c> (one
/// channel, one partition, so Kafka keeps its order), value the message's data, headers with seq, epoch, id and trace
/// context. Fan-out only queues (bounded by bytes; full, the newest is dropped and counted); one loop hands the queue
/// to an idempotent producer (acks=all), so a slow or absent Kafka never slows delivery to subscribers.
/// </summary>
public sealed partial class KafkaFirehose : BackgroundService, ISequencedTap
{
    /// <summary>What a queued message costs beyond its data (the message object, its strings): a round figure.</summary>
    private const int MessageOverheadBytes = 256;

    /// <summary>At most one line a period for drops and failures: a down Kafka would otherwise log once per message.</summary>
    private static readonly TimeSpan LogPeriod = TimeSpan.FromSeconds(10);

    /// <summary>How long a full librdkafka queue is given to drain before the same record is offered again.</summary>
    private static readonly TimeSpan FullQueuePoll = TimeSpan.FromMilliseconds(50);

    /// <summary>How long stopping waits for Kafka to take what was queued.</summary>
    private static readonly TimeSpan StopFlush = TimeSpan.FromSeconds(5);

    private static readonly byte[] Json = "json"u8.ToArray();
    private static readonly byte[] Binary = "binary"u8.ToArray();

    private readonly KafkaOptions _options;
    private readonly KafkaMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<KafkaFirehose> _logger;
    private readonly Channel<RelayMessage> _queue = Channel.CreateUnbounded<RelayMessage>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Action<DeliveryReport<string, byte[]>> _delivered;
    private long _queuedBytes;
    private long _droppedSinceLog;
    private long _failedSinceLog;
    private long _lastDropLog;
    private long _lastFailLog;

    /// <summary>Creates the firehose; it does nothing unless <see cref="KafkaOptions.FirehoseTopic"/> is set.</summary>
    public KafkaFirehose(IOptions<KafkaOptions> options, KafkaMetrics metrics, TimeProvider time, ILogger<KafkaFirehose> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        _delivered = OnDelivered;
    }

    /// <summary>Bytes of payload (and overhead) queued, not yet handed to the producer.</summary>
    public long QueuedBytes => Interlocked.Read(ref _queuedBytes);

    /// <inheritdoc />
    public void OnSequenced(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);

        // Presence events have no seq and are no part of a channel's history: the firehose carries the history.
        if (!_options.FirehoseEnabled || message.PresenceAction is not null)
        {
            return;
        }

        var size = message.Data.Length + MessageOverheadBytes;
        if (Interlocked.Add(ref _queuedBytes, size) > _options.FirehoseQueueBytes)
        {
            Interlocked.Add(ref _queuedBytes, -size);
            _metrics.Dropped();
            Interlocked.Increment(ref _droppedSinceLog);
            if (Due(ref _lastDropLog))
            {
                LogDropped(_logger, Interlocked.Exchange(ref _droppedSinceLog, 0), _options.FirehoseQueueBytes);
            }

            return;
        }

        if (!_queue.Writer.TryWrite(message))
        {
            Interlocked.Add(ref _queuedBytes, -size);
        }
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_options.FirehoseEnabled)
        {
            return;
        }

        // Off the host's start: building the producer loads librdkafka.
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        using var producer = new ProducerBuilder<string, byte[]>(new ProducerConfig
        {
            BootstrapServers = _options.BootstrapServers,
            ClientId = "relay-firehose",
            EnableIdempotence = true,
            Acks = Acks.All,
            MessageTimeoutMs = (int)_options.FirehoseMessageTimeout.TotalMilliseconds,

            // A few ms of batching costs little latency and saves most requests at thousands of messages a second.
            LingerMs = 5,

            // librdkafka's own buffer (default 1 GiB) sits behind Relay's queue: it gets the same bound, so a Kafka that is
            // away holds at most twice FirehoseQueueBytes before the firehose drops.
            QueueBufferingMaxKbytes = Math.Max(1, _options.FirehoseQueueBytes / 1024),
        })
            .SetErrorHandler((_, error) => LogKafkaError(error))
            .SetLogHandler((_, log) => LogLibrdkafka(_logger, log.Facility, log.Message))
            .Build();
        LogStarted(_logger, _options.FirehoseTopic!, _options.BootstrapServers!);

        var reader = _queue.Reader;
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
            {
                while (reader.TryRead(out var message))
                {
                    Produce(producer, message, stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }

        // Stopping: what is queued still goes (without waiting on a full producer), and Kafka gets a moment to take it.
        while (reader.TryRead(out var message))
        {
            Produce(producer, message, CancellationToken.None, waitWhenFull: false);
        }

        producer.Flush(StopFlush);
    }

    private void Produce(IProducer<string, byte[]> producer, RelayMessage message, CancellationToken stoppingToken, bool waitWhenFull = true)
    {
        var record = ToRecord(message);
        try
        {
            while (true)
            {
                try
                {
                    producer.Produce(_options.FirehoseTopic, record, _delivered);
                    return;
                }
                catch (ProduceException<string, byte[]> e) when (e.Error.Code == ErrorCode.Local_QueueFull && waitWhenFull && !stoppingToken.IsCancellationRequested)
                {
                    // librdkafka's buffer is full (Kafka slow or away): wait here, and Relay's queue fills and drops instead.
                    producer.Poll(FullQueuePoll);
                }
            }
        }
        catch (ProduceException<string, byte[]> e)
        {
            CountFailure(e.Error);
        }
        finally
        {
            Interlocked.Add(ref _queuedBytes, -(message.Data.Length + MessageOverheadBytes));
        }
    }

    internal static Message<string, byte[]> ToRecord(RelayMessage message)
    {
        var headers = new Headers
        {
            { KafkaHeaders.App, Encoding.UTF8.GetBytes(message.App) },
            { KafkaHeaders.Channel, Encoding.UTF8.GetBytes(message.Channel) },
            { KafkaHeaders.Seq, Encoding.ASCII.GetBytes(message.Seq.ToString(CultureInfo.InvariantCulture)) },
            { KafkaHeaders.Epoch, Encoding.UTF8.GetBytes(message.Epoch) },
            { KafkaHeaders.Encoding, message.DataIsJson ? Json : Binary },
        };
        if (message.Id is not null)
        {
            headers.Add(KafkaHeaders.Id, Encoding.UTF8.GetBytes(message.Id));
        }

        if (message.Name is not null)
        {
            headers.Add(KafkaHeaders.Name, Encoding.UTF8.GetBytes(message.Name));
        }

        if (message.ClientId is not null)
        {
            headers.Add(KafkaHeaders.ClientId, Encoding.UTF8.GetBytes(message.ClientId));
        }

        if (message.TraceParent is not null)
        {
            headers.Add(KafkaHeaders.TraceParent, Encoding.ASCII.GetBytes(message.TraceParent));
        }

        return new Message<string, byte[]>
        {
            Key = message.App + "/" + message.Channel,
            Value = message.Data.ToArray(),
            Headers = headers,
            Timestamp = new Timestamp(message.Timestamp, TimestampType.CreateTime),
        };
    }

    private void OnDelivered(DeliveryReport<string, byte[]> report)
    {
        if (report.Error.IsError)
        {
            CountFailure(report.Error);
        }
        else
        {
            _metrics.Produced();
        }
    }

    private void CountFailure(Error error)
    {
        _metrics.Failed();
        Interlocked.Increment(ref _failedSinceLog);
        if (Due(ref _lastFailLog))
        {
            LogFailed(_logger, Interlocked.Exchange(ref _failedSinceLog, 0), _options.FirehoseTopic!, error.Reason);
        }
    }

    private void LogKafkaError(Error error)
    {
        if (Due(ref _lastFailLog))
        {
            LogBrokerError(_logger, error.Code.ToString(), error.Reason);
        }
    }

    private bool Due(ref long last)
    {
        var now = _time.GetTimestamp();
        var previous = Interlocked.Read(ref last);
        return (previous == 0 || _time.GetElapsedTime(previous, now) >= LogPeriod) && Interlocked.CompareExchange(ref last, now, previous) == previous;
    }

    [LoggerMessage(EventId = 3000, Level = LogLevel.Information, Message = "Kafka firehose writing to topic {Topic} at {Brokers}")]
    private static partial void LogStarted(ILogger logger, string topic, string brokers);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "Kafka firehose dropped {Count} messages: its queue held Relay:Kafka:FirehoseQueueBytes ({Limit} bytes) waiting for Kafka")]
    private static partial void LogDropped(ILogger logger, long count, int limit);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "Kafka firehose failed to write {Count} messages to topic {Topic}: {Reason}")]
    private static partial void LogFailed(ILogger logger, long count, string topic, string reason);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Warning, Message = "Kafka firehose producer: {Code} {Reason}")]
    private static partial void LogBrokerError(ILogger logger, string code, string reason);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Debug, Message = "librdkafka {Facility}: {Message}")]
    private static partial void LogLibrdkafka(ILogger logger, string facility, string message);
}
