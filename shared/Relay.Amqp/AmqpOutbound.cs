using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;
using Relay.Bus.FanOut;
using Relay.Core.Channels;
using Relay.Core.Messages;

namespace Relay.Amqp;

/// <summary>
/// Publishes every sequenced message of <see cref="AmqpOptions.App"/> on <see cref="AmqpOptions.OutboundChannels"/> to
/// <see cref="AmqpOptions.Exchange"/>: persistent, with the message id and Relay's headers, and publisher confirms.
/// Fan-out only queues (bounded by bytes; full, the newest is dropped and counted); one loop publishes in fan-out's
/// order with up to <see cref="AmqpOptions.OutboundMaxInFlight"/> unconfirmed, and after a nack or a lost connection
/// publishes again, in order, everything from the first unconfirmed message on.
/// </summary>
public sealed partial class AmqpOutbound : BackgroundService, ISequencedTap
{
    /// <summary>What a queued message costs beyond its data (the message object, its strings): a round figure.</summary>
    private const int MessageOverheadBytes = 256;

    /// <summary>At most one line a period for drops and failures: a broker that is away would otherwise log once per message.</summary>
    private static readonly TimeSpan LogPeriod = TimeSpan.FromSeconds(10);

    /// <summary>First and longest wait before connecting again after a failure.</summary>
    private static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan LastRetry = TimeSpan.FromSeconds(5);

    /// <summary>How long stopping waits for the broker to confirm what was queued.</summary>
    private static readonly TimeSpan StopFlush = TimeSpan.FromSeconds(5);

    private static readonly object Matched = new();

    [ThreadStatic]
    private static List<object>? t_matches;

    private readonly AmqpOptions _options;
    private readonly AmqpMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<AmqpOutbound> _logger;
    private readonly PatternIndex<object>? _channels;
    private readonly Channel<RelayMessage> _queue = Channel.CreateUnbounded<RelayMessage>();
    private long _queuedBytes;
    private long _droppedSinceLog;
    private long _lastDropLog;
    private long _lastFailLog;

    /// <summary>Creates outbound; it does nothing unless <see cref="AmqpOptions.Exchange"/> is set.</summary>
    public AmqpOutbound(IOptions<AmqpOptions> options, AmqpMetrics metrics, TimeProvider time, ILogger<AmqpOutbound> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(metrics);
        _options = options.Value;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        if (_options.OutboundChannels.Count > 0)
        {
            _channels = new PatternIndex<object>();
            foreach (var pattern in _options.OutboundChannels)
            {
                _channels.Add(pattern, Matched);
            }
        }

        if (_options.OutboundEnabled)
        {
            metrics.ObserveBuffered(() => QueuedBytes);
        }
    }

    /// <summary>Bytes of payload (and overhead) held: queued, or published and not yet confirmed.</summary>
    public long QueuedBytes => Interlocked.Read(ref _queuedBytes);

    /// <inheritdoc />
    public void OnSequenced(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);

        // Presence events have no seq and are no part of a channel's history; other apps' channels are not bridged.
        if (!_options.OutboundEnabled || message.PresenceAction is not null || !string.Equals(message.App, _options.App, StringComparison.Ordinal) || !Selected(message.Channel))
        {
            return;
        }

        var size = message.Data.Length + MessageOverheadBytes;
        if (Interlocked.Add(ref _queuedBytes, size) > _options.OutboundQueueBytes)
        {
            Interlocked.Add(ref _queuedBytes, -size);
            _metrics.Dropped();
            Interlocked.Increment(ref _droppedSinceLog);
            if (Due(ref _lastDropLog))
            {
                LogDropped(_logger, Interlocked.Exchange(ref _droppedSinceLog, 0), _options.OutboundQueueBytes);
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
        if (!_options.OutboundEnabled)
        {
            return;
        }

        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);

        // After stopping is asked, what is queued still goes, for up to StopFlush.
        using var flush = new CancellationTokenSource();
        using var stopping = stoppingToken.Register(static state => ((CancellationTokenSource)state!).CancelAfter(StopFlush), flush);
        var factory = AmqpConnections.Factory(_options, "relay-amqp-outbound");
        var unconfirmed = new Queue<Pending>();
        var wait = FirstRetry;
        while (!flush.IsCancellationRequested)
        {
            try
            {
                var connection = await factory.CreateConnectionAsync(flush.Token).ConfigureAwait(false);
                await using var disposeConnection = connection.ConfigureAwait(false);
                var channel = await connection.CreateChannelAsync(
                    new CreateChannelOptions(
                        publisherConfirmationsEnabled: true,
                        publisherConfirmationTrackingEnabled: true,

                        // The library's limiter slows publishing from half its limit on: Relay's own window stays below that.
                        outstandingPublisherConfirmationsRateLimiter: new ThrottlingRateLimiter(_options.OutboundMaxInFlight * 2)),
                    flush.Token).ConfigureAwait(false);
                await using var disposeChannel = channel.ConfigureAwait(false);
                if (_options.Declare)
                {
                    await channel.ExchangeDeclareAsync(_options.Exchange!, _options.ExchangeType, durable: true, autoDelete: false, cancellationToken: flush.Token).ConfigureAwait(false);
                }

                _metrics.OutboundConnected(true);
                LogConnected(_logger, _options.Exchange!, factory.Endpoint.ToString(), unconfirmed.Count);
                wait = FirstRetry;
                await PumpAsync(channel, unconfirmed, stoppingToken, flush.Token).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException) when (flush.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                _metrics.OutboundConnected(false);
                var reason = e is OutboundFailure { Nacked: true } ? "nack" : "connection";
                _metrics.OutboundError(reason);
                if (Due(ref _lastFailLog))
                {
                    LogFailed(_logger, reason, unconfirmed.Count, wait, e.InnerException?.Message ?? e.Message);
                }
            }

            if (stoppingToken.IsCancellationRequested && unconfirmed.Count == 0 && _queue.Reader.Count == 0)
            {
                break;
            }

            try
            {
                await Task.Delay(wait, _time, stoppingToken.IsCancellationRequested ? flush.Token : stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (flush.IsCancellationRequested)
            {
                break;
            }
            catch (OperationCanceledException)
            {
                // Stopping: one more connection for the flush, without the wait.
            }

            wait = AmqpConnections.Next(wait, LastRetry);
        }

        _metrics.OutboundConnected(false);
        var left = unconfirmed.Count + _queue.Reader.Count;
        if (left > 0)
        {
            LogLeftAtStop(_logger, left);
        }
    }

    private async Task PumpAsync(IChannel channel, Queue<Pending> unconfirmed, CancellationToken stoppingToken, CancellationToken flushToken)
    {
        // What a nack or the last connection left unconfirmed goes first, in its order: the broker took a prefix of it
        // at most, so a channel's messages reach the exchange in seq order, some of them twice.
        if (unconfirmed.Count > 0)
        {
            var again = unconfirmed.ToArray();
            unconfirmed.Clear();
            foreach (var pending in again)
            {
                unconfirmed.Enqueue(Publish(channel, pending.Message));
            }
        }

        var reader = _queue.Reader;
        while (true)
        {
            while (unconfirmed.Count < _options.OutboundMaxInFlight && reader.TryRead(out var message))
            {
                if (RoutingKeyOf(message) is null)
                {
                    Release(message);
                    continue;
                }

                unconfirmed.Enqueue(Publish(channel, message));
            }

            if (unconfirmed.Count == 0)
            {
                if (stoppingToken.IsCancellationRequested)
                {
                    return;
                }

                try
                {
                    await reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                }

                continue;
            }

            var oldest = unconfirmed.Peek().Confirm;
            if (!oldest.IsCompleted)
            {
                if (unconfirmed.Count < _options.OutboundMaxInFlight && !stoppingToken.IsCancellationRequested)
                {
                    // A confirm, or more to publish: whichever comes first.
                    await Task.WhenAny(oldest, reader.WaitToReadAsync(stoppingToken).AsTask()).ConfigureAwait(false);
                }
                else
                {
                    await Task.WhenAny(oldest, Task.Delay(Timeout.InfiniteTimeSpan, flushToken)).ConfigureAwait(false);
                    flushToken.ThrowIfCancellationRequested();
                }

                continue;
            }

            var confirmed = 0;
            while (unconfirmed.TryPeek(out var pending) && pending.Confirm.IsCompleted)
            {
                if (!pending.Confirm.IsCompletedSuccessfully)
                {
                    _metrics.Confirmed(confirmed);

                    // Everything after it settles first (confirmed, nacked or failed with the channel); then all of it,
                    // from this one on, is published again on a new connection.
                    await SettleAsync(unconfirmed, flushToken).ConfigureAwait(false);
                    var error = pending.Confirm.Exception?.InnerException;
                    throw new OutboundFailure(error is PublishException, error);
                }

                unconfirmed.Dequeue();
                Release(pending.Message);
                confirmed++;
            }

            _metrics.Confirmed(confirmed);
        }
    }

    private static async Task SettleAsync(Queue<Pending> unconfirmed, CancellationToken flushToken)
    {
        foreach (var pending in unconfirmed)
        {
            try
            {
                await pending.Confirm.WaitAsync(flushToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException || !flushToken.IsCancellationRequested)
            {
            }
        }
    }

    private Pending Publish(IChannel channel, RelayMessage message)
    {
        Task confirm;
        try
        {
            confirm = channel.BasicPublishAsync(_options.Exchange!, RoutingKeyOf(message)!, mandatory: false, ToProperties(message), message.Data, CancellationToken.None).AsTask();
        }
        catch (Exception e) when (e is AlreadyClosedException or OperationInterruptedException or ObjectDisposedException or InvalidOperationException)
        {
            confirm = Task.FromException(e);
        }

        _metrics.Published();
        return new Pending(message, confirm);
    }

    internal string? RoutingKeyOf(RelayMessage message)
    {
        var key = _options.RoutingKey == AmqpOptions.DefaultRoutingKey
            ? message.Channel
            : _options.RoutingKey.Replace("{channel}", message.Channel, StringComparison.Ordinal).Replace("{app}", message.App, StringComparison.Ordinal);
        if (System.Text.Encoding.UTF8.GetByteCount(key) <= 255)
        {
            return key;
        }

        // AMQP routing keys are at most 255 bytes; a channel name alone never is longer, a template with it may be.
        _metrics.OutboundError("routing_key");
        LogRoutingKeyTooLong(_logger, message.Channel, message.Seq);
        return null;
    }

    internal static BasicProperties ToProperties(RelayMessage message)
    {
        var headers = new Dictionary<string, object?>(9, StringComparer.Ordinal)
        {
            [AmqpHeaders.App] = message.App,
            [AmqpHeaders.Channel] = message.Channel,
            [AmqpHeaders.Seq] = message.Seq,
            [AmqpHeaders.Epoch] = message.Epoch,
            [AmqpHeaders.Encoding] = message.DataIsJson ? "json" : "binary",
        };
        if (message.Id is not null)
        {
            headers[AmqpHeaders.Id] = message.Id;
        }

        if (message.Name is not null)
        {
            headers[AmqpHeaders.Name] = message.Name;
        }

        if (message.ClientId is not null)
        {
            headers[AmqpHeaders.ClientId] = message.ClientId;
        }

        if (message.TraceParent is not null)
        {
            headers[AmqpHeaders.TraceParent] = message.TraceParent;
        }

        return new BasicProperties
        {
            DeliveryMode = DeliveryModes.Persistent,
            MessageId = message.Id,
            ContentType = message.DataIsJson ? "application/json" : "application/octet-stream",
            Timestamp = new AmqpTimestamp(message.Timestamp / 1000),
            Headers = headers,
        };
    }

    private bool Selected(string channel)
    {
        if (_channels is null)
        {
            return true;
        }

        var matches = t_matches ??= new List<object>(1);
        matches.Clear();
        _channels.Match(channel, matches);
        return matches.Count > 0;
    }

    private void Release(RelayMessage message) => Interlocked.Add(ref _queuedBytes, -(message.Data.Length + MessageOverheadBytes));

    private bool Due(ref long last)
    {
        var now = _time.GetTimestamp();
        var previous = Interlocked.Read(ref last);
        return (previous == 0 || _time.GetElapsedTime(previous, now) >= LogPeriod) && Interlocked.CompareExchange(ref last, now, previous) == previous;
    }

    private readonly record struct Pending(RelayMessage Message, Task Confirm);

    /// <summary>A publish the broker nacked, or one lost with its channel: the connection is replaced and the rest published again.</summary>
    private sealed class OutboundFailure(bool nacked, Exception? inner) : Exception(nacked ? "the broker nacked a publish" : "a publish was lost with its channel", inner)
    {
        public bool Nacked { get; } = nacked;
    }

    [LoggerMessage(EventId = 3600, Level = LogLevel.Information, Message = "AMQP outbound publishing to exchange {Exchange} at {Endpoint}; {Unconfirmed} unconfirmed messages published again first")]
    private static partial void LogConnected(ILogger logger, string exchange, string endpoint, int unconfirmed);

    [LoggerMessage(EventId = 3601, Level = LogLevel.Warning, Message = "AMQP outbound dropped {Count} messages: its buffer held Relay:Amqp:OutboundQueueBytes ({Limit} bytes) waiting for the broker")]
    private static partial void LogDropped(ILogger logger, long count, int limit);

    [LoggerMessage(EventId = 3602, Level = LogLevel.Warning, Message = "AMQP outbound lost its connection or a publish ({Reason}); {Unconfirmed} unconfirmed messages will be published again, connecting in {Wait}: {Error}")]
    private static partial void LogFailed(ILogger logger, string reason, int unconfirmed, TimeSpan wait, string error);

    [LoggerMessage(EventId = 3603, Level = LogLevel.Warning, Message = "AMQP outbound skipped seq {Seq} of channel {Channel}: its routing key (Relay:Amqp:RoutingKey) would be over 255 bytes")]
    private static partial void LogRoutingKeyTooLong(ILogger logger, string channel, long seq);

    [LoggerMessage(EventId = 3604, Level = LogLevel.Warning, Message = "AMQP outbound stopped with {Count} messages not confirmed by the broker")]
    private static partial void LogLeftAtStop(ILogger logger, int count);
}
