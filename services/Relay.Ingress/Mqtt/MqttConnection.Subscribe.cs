using Microsoft.Extensions.Logging;
using Relay.Core.Auth;
using Relay.Core.Channels;
using Relay.Core.Protocol;
using Relay.Ingress.Mqtt.Codec;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// SUBSCRIBE and UNSUBSCRIBE: a topic filter is a channel name or pattern (<c>+</c> and <c>#</c> through the node's one
/// matcher); each gets the QoS asked for (0, 1 or 2), or a failure code: MQTT 3.1.1's 0x80, MQTT 5's reason (0x87 not
/// authorized, 0x8F filter invalid, 0x97 over a limit). MQTT 5's No Local, Retain As Published and Subscription
/// Identifier ride on the subscription's sink; a shared subscription (<c>$share/{group}/{filter}</c>) joins its group on
/// the node (<see cref="MqttShareGroup"/>).
/// </summary>
internal sealed partial class MqttConnection
{
    /// <summary>The prefix of a shared subscription's filter: <c>$share/{group}/{filter}</c> (MQTT 5 §4.8.2; 3.1.1 clients too, as mosquitto).</summary>
    private const string SharePrefix = "$share/";

    private async ValueTask SubscribeAsync(MqttSubscribe subscribe)
    {
        var codes = new List<byte>(subscribe.Subscriptions.Count);
        List<(string Filter, byte Qos)>? retained = null;

        // MQTT 5 §3.8.2.1.2: one Subscription Identifier for every filter of the SUBSCRIBE.
        var identifier = subscribe.Properties?.SubscriptionIdentifiers is [var id, ..] ? id : 0;
        foreach (var requested in subscribe.Subscriptions)
        {
            var (code, existed) = await SubscribeOneAsync(requested, identifier).ConfigureAwait(false);
            codes.Add(code);

            // MQTT 5 §3.3.1.3 Retain Handling: 0 sends the retained messages, 1 only for a new subscription, 2 never;
            // §4.8.2: none for a shared subscription.
            if (code <= 2 && (requested.RetainHandling == 0 || (requested.RetainHandling == 1 && !existed))
                && !requested.Filter.StartsWith(SharePrefix, StringComparison.Ordinal))
            {
                (retained ??= []).Add((requested.Filter, code));
            }
        }

        var ack = new MqttSubAck { PacketId = subscribe.PacketId };
        ack.ReasonCodes.AddRange(codes);
        Send(ack);
        foreach (var (filter, qos) in retained ?? [])
        {
            foreach (var message in await RetainedMatchingAsync(filter).ConfigureAwait(false))
            {
                Enqueue(new MqttOutbound(message, null, qos, Retain: true));
            }
        }
    }

    // The retained messages a new subscription gets; none (logged) when the retained store does not answer.
    private async ValueTask<IReadOnlyList<Relay.Core.Messages.RelayMessage>> RetainedMatchingAsync(string filter)
    {
        try
        {
            return await _broker.Retained.MatchingAsync(App, filter, _node.Stopping).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            LogRetainedReadFailed(_logger, ex, ConnectionId, filter);
            return [];
        }
    }

    private async ValueTask<(byte Code, bool Existed)> SubscribeOneAsync(MqttSubscription requested, int identifier)
    {
        var filter = requested.Filter;
        var topicFilter = filter;
        string? group = null;
        byte failure = V5 ? (byte)0 : MqttReasonCodes.V3SubscribeFailure;
        if (filter.StartsWith(SharePrefix, StringComparison.Ordinal))
        {
            // $share/{group}/{filter}: the group is one level, neither '+' nor '#' in it, and a filter follows.
            var rest = filter.AsSpan(SharePrefix.Length);
            var slash = rest.IndexOf('/');
            if (slash <= 0 || rest[..slash].ContainsAny('+', '#') || slash == rest.Length - 1)
            {
                return (Failed(MqttReasonCodes.TopicFilterInvalid, "a shared subscription is $share/{group}/{filter}, the group one level without '+' or '#'"), false);
            }

            if (V5 && requested.NoLocal)
            {
                throw MqttProtocolException.Protocol("No Local set on a shared subscription");
            }

            group = rest[..slash].ToString();
            topicFilter = rest[(slash + 1)..].ToString();
        }

        if (!ChannelName.IsValidPattern(topicFilter, out var invalid))
        {
            return (Failed(MqttReasonCodes.TopicFilterInvalid, invalid), false);
        }

        if (!_principal!.Capabilities.Allows(topicFilter, Operations.Subscribe))
        {
            return (Failed(MqttReasonCodes.NotAuthorized, $"the credentials do not allow 'subscribe' on '{topicFilter}'"), false);
        }

        // Relay sequences and stores every message, so each may go out at the QoS the filter asked for (docs/mqtt.md).
        var qos = requested.Qos;
        MqttSubscriptionSink? previous;
        lock (_session!.Subscriptions)
        {
            _session.Subscriptions.Remove(filter, out previous);
            if (previous is null && _session.Subscriptions.Count >= _node.Options.MaxSubscriptionsPerConnection)
            {
                return (Failed(MqttReasonCodes.QuotaExceeded, $"a connection may hold at most {_node.Options.MaxSubscriptionsPerConnection} subscriptions (Relay:Ingress:MaxSubscriptionsPerConnection)"), false);
            }
        }

        // MQTT 3.1.1 §3.8.4, 5.0 §3.8.4: a filter subscribed again replaces the subscription (its QoS and options may change).
        if (previous is not null)
        {
            await _broker.RemoveAsync(previous).ConfigureAwait(false);
        }

        var sink = new MqttSubscriptionSink(_session, filter, qos)
        {
            TopicFilter = topicFilter,
            NoLocalClientId = V5 && requested.NoLocal ? _principal.ClientId : null,
            RetainAsPublished = V5 && requested.RetainAsPublished,
            Identifier = V5 ? identifier : 0,
        };
        try
        {
            if (group is null)
            {
                sink.Subscription = await _node.StartSubscriptionAsync(sink, App, topicFilter, null, null, null, static (_, _, _) => { }).ConfigureAwait(false);
            }
            else
            {
                await _broker.JoinShareAsync(sink, group, topicFilter).ConfigureAwait(false);
            }
        }
        catch (RelayException ex)
        {
            return (Failed(ex.Error.Code == ErrorCodes.RateLimited ? MqttReasonCodes.QuotaExceeded : MqttReasonCodes.UnspecifiedError, ex.Error.Message), false);
        }

        bool kept;
        lock (_session!.Subscriptions)
        {
            // Capabilities may have changed meanwhile, or the connection closed: then it is not kept.
            kept = Volatile.Read(ref _closing) == 0 && _principal.Capabilities.Allows(topicFilter, Operations.Subscribe) && _session.Subscriptions.TryAdd(filter, sink);
        }

        if (!kept)
        {
            await _broker.RemoveAsync(sink).ConfigureAwait(false);
            return (Failed(MqttReasonCodes.NotAuthorized, "the connection closed or its credentials changed while subscribing"), false);
        }

        if (sink.Identifier != 0 && group is null)
        {
            _session.IdentifiedForAdding.Add(topicFilter, sink);
        }

        return (qos, previous is not null);

        byte Failed(byte v5Code, string reason)
        {
            LogSubscribeRefused(_logger, ConnectionId, filter, v5Code, reason);
            return V5 ? v5Code : failure;
        }
    }

    private async ValueTask UnsubscribeAsync(MqttUnsubscribe unsubscribe)
    {
        var ack = new MqttSubAck(MqttPacketType.UnsubAck) { PacketId = unsubscribe.PacketId };
        foreach (var filter in unsubscribe.Filters)
        {
            MqttSubscriptionSink? removed;
            lock (_session!.Subscriptions)
            {
                _session.Subscriptions.Remove(filter, out removed);
            }

            if (removed is not null)
            {
                await _broker.RemoveAsync(removed).ConfigureAwait(false);
            }

            ack.ReasonCodes.Add(removed is null ? MqttReasonCodes.NoSubscriptionExisted : MqttReasonCodes.Success);
        }

        Send(ack);
    }

    /// <summary>Drops every subscription the current capabilities no longer allow (MQTT has no message for it: they just stop).</summary>
    private async Task DropForbiddenAsync()
    {
        var dropped = new List<MqttSubscriptionSink>();
        lock (_session!.Subscriptions)
        {
            foreach (var (_, sink) in _session.Subscriptions)
            {
                if (!_principal!.Capabilities.Allows(sink.TopicFilter, Operations.Subscribe))
                {
                    dropped.Add(sink);
                }
            }

            foreach (var sink in dropped)
            {
                _session.Subscriptions.Remove(sink.Filter);
            }
        }

        try
        {
            foreach (var sink in dropped)
            {
                await _broker.RemoveAsync(sink).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
        }
    }

    /// <summary>
    /// After the read loop: a persistent session keeps its subscriptions and keeps what arrives from now; a clean one's
    /// subscriptions go. The will is published if it is due, the client id is freed, and the queue ends.
    /// </summary>
    private async Task CloseAsync()
    {
        Close(0, null);
        try
        {
            if (_session is { } session)
            {
                session.Detach(this, _node.Time.GetUtcNow());
                if (session.ExpirySeconds == 0)
                {
                    await _broker.DiscardAsync(session).ConfigureAwait(false);
                }
            }

            await PublishWillAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
        }
        finally
        {
            if (_principal is { } principal && _clientId is not null)
            {
                _broker.Release(principal.AppId, _clientId, this);
            }
        }
    }

    [LoggerMessage(EventId = 1431, Level = LogLevel.Error, Message = "MQTT connection {ConnectionId}: the retained messages for '{Filter}' could not be read (the retained store did not answer); the subscription stands without them")]
    private static partial void LogRetainedReadFailed(ILogger logger, Exception exception, string connectionId, string filter);

    [LoggerMessage(EventId = 1430, Level = LogLevel.Debug, Message = "MQTT connection {ConnectionId}: subscription to '{Filter}' refused (0x{ReasonCode:X2}): {Reason}")]
    private static partial void LogSubscribeRefused(ILogger logger, string connectionId, string filter, byte reasonCode, string reason);
}
