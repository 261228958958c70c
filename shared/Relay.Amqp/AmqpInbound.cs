using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using Relay.Bus;
using Relay.Bus.Routing;
using Relay.Core.Channels;
using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Amqp;

/// <summary>
/// Consumes <see cref="AmqpOptions.Queue"/> into channels of <see cref="AmqpOptions.App"/> through routing, as an HTTP
/// publish does (seq, history and dedupe apply). A delivery is acked only after routing acknowledged its publish; one
/// Relay refuses for what it is (bad channel, too large, refused by routing) is rejected without requeue, so the queue's
/// dead-letter exchange gets it; when routing cannot take a publish now, the channel is closed, which puts every
/// unacked delivery back in the queue in its order, and consuming starts again after a pause. The message id (AMQP
/// <c>message-id</c>, else the <c>relay-id</c> header) lets routing drop a redelivery of what it already took.
/// </summary>
public sealed partial class AmqpInbound : BackgroundService
{
    /// <summary>Messages per publish request: a channel's run of deliveries goes to routing in a few requests, not one each.</summary>
    private const int MaxItemsPerPublish = 100;

    /// <summary>The longest message id routing keeps for dedupe (the protocol's limit).</summary>
    private const int MaxIdLength = 64;

    /// <summary>First and longest wait before consuming again after a lost connection or a requeue.</summary>
    private static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan LastRetry = TimeSpan.FromSeconds(5);

    private static readonly string[] AllKeys = ["#"];

    private readonly AmqpOptions _options;
    private readonly IRelayBus _bus;
    private readonly AmqpMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<AmqpInbound> _logger;

    /// <summary>Creates inbound; it does nothing unless <see cref="AmqpOptions.Queue"/> is set.</summary>
    public AmqpInbound(IOptions<AmqpOptions> options, IRelayBus bus, AmqpMetrics metrics, TimeProvider time, ILogger<AmqpInbound> logger)
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
        if (!_options.InboundEnabled)
        {
            return;
        }

        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        var factory = AmqpConnections.Factory(_options, "relay-amqp-inbound");
        var wait = FirstRetry;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var connection = await factory.CreateConnectionAsync(stoppingToken).ConfigureAwait(false);
                await using var disposeConnection = connection.ConfigureAwait(false);
                var channel = await connection.CreateChannelAsync(cancellationToken: stoppingToken).ConfigureAwait(false);
                await using var disposeChannel = channel.ConfigureAwait(false);
                await DeclareAsync(channel, stoppingToken).ConfigureAwait(false);
                await channel.BasicQosAsync(0, (ushort)_options.Prefetch, global: false, stoppingToken).ConfigureAwait(false);

                // The consumer only copies each delivery out (its body is the library's buffer until the handler returns);
                // one loop publishes and acks, so acks follow routing in the queue's order. Prefetch bounds this queue.
                var deliveries = Channel.CreateUnbounded<Delivery>(new UnboundedChannelOptions { SingleReader = true });
                var consumer = new AsyncEventingBasicConsumer(channel);
                consumer.ReceivedAsync += (_, e) =>
                {
                    _metrics.Consumed();
                    deliveries.Writer.TryWrite(new Delivery(e.DeliveryTag, e.RoutingKey, e.BasicProperties, e.Body.ToArray()));
                    return Task.CompletedTask;
                };
                consumer.ShutdownAsync += (_, _) =>
                {
                    deliveries.Writer.TryComplete();
                    return Task.CompletedTask;
                };
                channel.ChannelShutdownAsync += (_, _) =>
                {
                    deliveries.Writer.TryComplete();
                    return Task.CompletedTask;
                };
                await channel.BasicConsumeAsync(_options.Queue!, autoAck: false, consumer, stoppingToken).ConfigureAwait(false);
                _metrics.InboundConnected(true);
                LogConsuming(_logger, _options.Queue!, factory.Endpoint.ToString(), _options.App!);

                if (await ConsumeAsync(channel, deliveries.Reader, () => wait = FirstRetry, stoppingToken).ConfigureAwait(false))
                {
                    // Routing could not take a publish now: closing the channel (leaving this block) requeues it and every
                    // delivery after it, in their order; they come again after the pause.
                    LogRequeued(_logger, wait);
                }
                else
                {
                    _metrics.InboundError("connection");
                    LogConnectionLost(_logger, wait, channel.CloseReason?.ReplyText ?? "closed");
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                _metrics.InboundError("connection");
                LogConnectionFailed(_logger, wait, e.Message);
            }
            finally
            {
                _metrics.InboundConnected(false);
            }

            try
            {
                await Task.Delay(wait, _time, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            wait = AmqpConnections.Next(wait, LastRetry);
        }
    }

    private async Task DeclareAsync(IChannel channel, CancellationToken cancellationToken)
    {
        if (!_options.Declare)
        {
            return;
        }

        // One consumer at a time across every Relay process on this queue: a channel's messages stay in order.
        var arguments = new Dictionary<string, object?>(StringComparer.Ordinal) { ["x-single-active-consumer"] = true };
        if (_options.DeadLetterExchange is not null)
        {
            arguments["x-dead-letter-exchange"] = _options.DeadLetterExchange;
        }

        await channel.QueueDeclareAsync(_options.Queue!, durable: true, exclusive: false, autoDelete: false, arguments, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (_options.InboundExchange is not null)
        {
            await channel.ExchangeDeclareAsync(_options.InboundExchange, _options.ExchangeType, durable: true, autoDelete: false, cancellationToken: cancellationToken).ConfigureAwait(false);
            foreach (var key in _options.InboundBindingKeys.Count > 0 ? _options.InboundBindingKeys : AllKeys)
            {
                await channel.QueueBindAsync(_options.Queue!, _options.InboundExchange, key, cancellationToken: cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Publishes and acks batches until the channel closes (false) or a batch must be requeued (true).</summary>
    private async Task<bool> ConsumeAsync(IChannel channel, ChannelReader<Delivery> reader, Action progressed, CancellationToken stoppingToken)
    {
        var batch = new List<Delivery>(_options.Prefetch);
        while (await reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
        {
            batch.Clear();
            while (batch.Count < _options.Prefetch && reader.TryRead(out var delivery))
            {
                batch.Add(delivery);
            }

            if (await HandleBatchAsync(channel, batch, stoppingToken).ConfigureAwait(false))
            {
                return true;
            }

            progressed();
        }

        return false;
    }

    private async Task<bool> HandleBatchAsync(IChannel channel, List<Delivery> batch, CancellationToken stoppingToken)
    {
        // A channel's deliveries keep the queue's order; channels go to routing side by side.
        var channels = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        var items = new PublishItem[batch.Count];
        var outcomes = new Outcome[batch.Count];
        var traceParents = new Dictionary<string, string?>(StringComparer.Ordinal);
        for (var i = 0; i < batch.Count; i++)
        {
            if (TryRead(batch[i], out var name, out items[i], out var traceParent))
            {
                if (!channels.TryGetValue(name, out var indexes))
                {
                    channels[name] = indexes = [];
                    traceParents[name] = traceParent;
                }

                indexes.Add(i);
            }
            else
            {
                outcomes[i] = Outcome.Reject;
            }
        }

        var publishes = new List<Task>(channels.Count);
        foreach (var (name, indexes) in channels)
        {
            publishes.Add(PublishChannelAsync(name, indexes, items, outcomes, traceParents[name], stoppingToken));
        }

        await Task.WhenAll(publishes).ConfigureAwait(false);

        // Rejected first: a multiple ack below must not cover them. Then the acks, each only after routing took it.
        var requeue = false;
        var lastAck = -1;
        for (var i = 0; i < batch.Count; i++)
        {
            switch (outcomes[i])
            {
                case Outcome.Reject:
                    await channel.BasicRejectAsync(batch[i].Tag, requeue: false, stoppingToken).ConfigureAwait(false);
                    break;
                case Outcome.Ack:
                    lastAck = i;
                    break;
                default:
                    requeue = true;
                    break;
            }
        }

        if (!requeue && lastAck >= 0)
        {
            // Every delivery of the batch is settled: one ack covers those routing took.
            await channel.BasicAckAsync(batch[lastAck].Tag, multiple: true, stoppingToken).ConfigureAwait(false);
        }
        else if (requeue)
        {
            for (var i = 0; i < batch.Count; i++)
            {
                if (outcomes[i] == Outcome.Ack)
                {
                    await channel.BasicAckAsync(batch[i].Tag, multiple: false, stoppingToken).ConfigureAwait(false);
                }
                else if (outcomes[i] == Outcome.Pending)
                {
                    _metrics.InboundError("requeued");
                }
            }
        }

        return requeue;
    }

    private async Task PublishChannelAsync(string channel, List<int> indexes, PublishItem[] items, Outcome[] outcomes, string? traceParent, CancellationToken stoppingToken)
    {
        for (var start = 0; start < indexes.Count; start += MaxItemsPerPublish)
        {
            var count = Math.Min(MaxItemsPerPublish, indexes.Count - start);
            var chunk = new PublishItem[count];
            for (var i = 0; i < count; i++)
            {
                chunk[i] = items[indexes[start + i]];
            }

            RoutingReply? reply = null;
            try
            {
                reply = await _bus.SendToRoutingAsync(new PublishRequest(_options.App!, channel, chunk, ClientId: null, traceParent), stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                LogPublishFailed(_logger, channel, e.Message);
            }

            Outcome outcome;
            if (reply is PublishReply)
            {
                _metrics.Ingested(count);
                outcome = Outcome.Ack;
            }
            else if (reply is ErrorReply { Error.Code: < ErrorCodes.Internal and not ErrorCodes.RateLimited } refused)
            {
                // Refused for what the messages hold, not for the moment: requeued, they would come back for ever.
                _metrics.InboundError("refused", count);
                LogRefused(_logger, count, channel, refused.Error.Code, refused.Error.Message);
                outcome = Outcome.Reject;
            }
            else
            {
                if (reply is ErrorReply failed)
                {
                    LogPublishFailed(_logger, channel, failed.Error.Message);
                }

                // This chunk and the rest of the channel's deliveries go back to the queue, in order.
                return;
            }

            for (var i = 0; i < count; i++)
            {
                outcomes[indexes[start + i]] = outcome;
            }
        }
    }

    private bool TryRead(Delivery delivery, out string channel, out PublishItem item, out string? traceParent)
    {
        item = default;
        traceParent = null;
        var headers = delivery.Properties.Headers;
        channel = Header(headers, _options.ChannelHeader) ?? delivery.RoutingKey;
        if (channel.Length == 0)
        {
            return Reject(delivery, "no_channel", $"no '{_options.ChannelHeader}' header and no routing key");
        }

        if (!ChannelName.IsValidName(channel, out var invalid))
        {
            return Reject(delivery, "bad_channel", invalid);
        }

        if (delivery.Body.Length > _options.InboundMaxMessageBytes)
        {
            return Reject(delivery, "too_large", $"{delivery.Body.Length} bytes, over Relay:Amqp:InboundMaxMessageBytes ({_options.InboundMaxMessageBytes})");
        }

        if (delivery.Body.Length == 0)
        {
            return Reject(delivery, "empty", "no body");
        }

        var id = delivery.Properties.MessageId ?? Header(headers, AmqpHeaders.Id);
        if (id is { Length: 0 or > MaxIdLength })
        {
            return Reject(delivery, "bad_id", $"the message id must be 1 to {MaxIdLength} characters");
        }

        var json = Header(headers, AmqpHeaders.Encoding) != "binary" && JsonPayload.IsOneValue(delivery.Body);
        item = new PublishItem(Header(headers, AmqpHeaders.Name), delivery.Body, json, id);
        traceParent = Header(headers, AmqpHeaders.TraceParent);
        return true;
    }

    private bool Reject(Delivery delivery, string reason, string detail)
    {
        _metrics.InboundError(reason);
        LogRejected(_logger, delivery.Tag, delivery.RoutingKey, reason, detail);
        return false;
    }

    /// <summary>A header's text: AMQP long strings arrive as bytes (UTF-8).</summary>
    private static string? Header(IDictionary<string, object?>? headers, string name) =>
        headers is not null && headers.TryGetValue(name, out var value)
            ? value switch
            {
                byte[] bytes => Encoding.UTF8.GetString(bytes),
                string text => text,
                null => null,
                _ => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture),
            }
            : null;

    private enum Outcome
    {
        /// <summary>Not settled: routing could not take it now (or was not asked); it goes back to the queue.</summary>
        Pending,
        Ack,
        Reject,
    }

    private readonly record struct Delivery(ulong Tag, string RoutingKey, IReadOnlyBasicProperties Properties, byte[] Body);

    [LoggerMessage(EventId = 3650, Level = LogLevel.Information, Message = "AMQP inbound consuming queue {Queue} at {Endpoint} into app {App}")]
    private static partial void LogConsuming(ILogger logger, string queue, string endpoint, string app);

    [LoggerMessage(EventId = 3651, Level = LogLevel.Warning, Message = "AMQP inbound rejected delivery {Tag} (routing key {RoutingKey}): {Reason}, {Detail}")]
    private static partial void LogRejected(ILogger logger, ulong tag, string routingKey, string reason, string detail);

    [LoggerMessage(EventId = 3652, Level = LogLevel.Warning, Message = "AMQP inbound: routing refused {Count} messages for channel {Channel} ({Code} {Reason}); rejected")]
    private static partial void LogRefused(ILogger logger, int count, string channel, int code, string reason);

    [LoggerMessage(EventId = 3653, Level = LogLevel.Warning, Message = "AMQP inbound could not publish to channel {Channel}: {Reason}")]
    private static partial void LogPublishFailed(ILogger logger, string channel, string reason);

    [LoggerMessage(EventId = 3654, Level = LogLevel.Warning, Message = "AMQP inbound requeued what routing could not take now; consuming again in {Wait}")]
    private static partial void LogRequeued(ILogger logger, TimeSpan wait);

    [LoggerMessage(EventId = 3655, Level = LogLevel.Warning, Message = "AMQP inbound lost its channel ({Reason}); unacked deliveries go back to the queue; consuming again in {Wait}")]
    private static partial void LogConnectionLost(ILogger logger, TimeSpan wait, string reason);

    [LoggerMessage(EventId = 3656, Level = LogLevel.Warning, Message = "AMQP inbound could not connect or consume; trying again in {Wait}: {Error}")]
    private static partial void LogConnectionFailed(ILogger logger, TimeSpan wait, string error);
}
