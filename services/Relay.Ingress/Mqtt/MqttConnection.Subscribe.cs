using Microsoft.Extensions.Logging;
using Relay.Core.Auth;
using Relay.Core.Channels;
using Relay.Core.Messages;
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

    /// <param name="arrivedTicks">When the SUBSCRIBE reached the host (UTC ticks; 0: unknown): see <see cref="IngressNode.StartSubscriptionAsync"/>.</param>
    private async ValueTask SubscribeAsync(MqttSubscribe subscribe, long arrivedTicks)
    {
        var codes = new List<byte>(subscribe.Subscriptions.Count);
        List<(string Filter, byte Qos, long LiveFrom)>? retained = null;

        // MQTT 5 §3.8.2.1.2: one Subscription Identifier for every filter of the SUBSCRIBE.
        var identifier = subscribe.Properties?.SubscriptionIdentifiers is [var id, ..] ? id : 0;
        foreach (var requested in subscribe.Subscriptions)
        {
            var (code, existed) = await SubscribeOneAsync(requested, identifier, arrivedTicks: arrivedTicks).ConfigureAwait(false);
            codes.Add(code);

            // MQTT 5 §3.3.1.3 Retain Handling: 0 sends the retained messages, 1 only for a new subscription, 2 never;
            // §4.8.2: none for a shared subscription.
            if (code <= 2 && (requested.RetainHandling == 0 || (requested.RetainHandling == 1 && !existed))
                && !requested.Filter.StartsWith(SharePrefix, StringComparison.Ordinal))
            {
                // Messages dispatched after this (its arrival, or now: it is added) reach it live.
                (retained ??= []).Add((requested.Filter, code, arrivedTicks != 0 ? arrivedTicks : DateTime.UtcNow.Ticks));
            }
        }

        var ack = new MqttSubAck { PacketId = subscribe.PacketId };
        ack.ReasonCodes.AddRange(codes);
        Send(ack);
        SaveSession();
        foreach (var (filter, qos, liveFrom) in retained ?? [])
        {
            // A retained message the subscription got live is not sent again (a broker that subscribes in one step
            // sends it once: live when the SUBSCRIBE came first, as retained when the publish did).
            var live = Node.DispatchedAfter(App, filter, ChannelName.IsPattern(filter), liveFrom);
            foreach (var message in await RetainedMatchingAsync(filter).ConfigureAwait(false))
            {
                if (live?.Exists(sent => sent.Seq == message.Seq && sent.Channel == message.Channel && sent.Epoch == message.Epoch) == true)
                {
                    continue;
                }

                Enqueue(new MqttOutbound(message, null, MessageProperties.DeliveryQos(message.Properties, qos), Retain: true));
            }
        }
    }

    // The retained messages a new subscription gets; none (logged) when the retained store does not answer.
    private async ValueTask<IReadOnlyList<Relay.Core.Messages.RelayMessage>> RetainedMatchingAsync(string filter)
    {
        try
        {
            return await _broker.Retained.MatchingAsync(App, filter, Node.Stopping).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            LogRetainedReadFailed(Logger, ex, ConnectionId, filter);
            return [];
        }
    }

    /// <summary>
    /// Subscribes one filter, replacing the session's subscription to it. A channel name with <paramref name="since"/> (a
    /// session resumed from another node) gets the messages after it from history first, as a WebSocket <c>since</c>.
    /// </summary>
    private async ValueTask<(byte Code, bool Existed)> SubscribeOneAsync(MqttSubscription requested, int identifier, ChannelPosition? since = null, long arrivedTicks = 0)
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

        if (!ChannelName.IsValidTopicFilter(topicFilter, out var invalid))
        {
            return (Failed(MqttReasonCodes.TopicFilterInvalid, invalid), false);
        }

        if (!_principal!.Capabilities.Allows(topicFilter, Operations.Subscribe))
        {
            return (Failed(MqttReasonCodes.NotAuthorized, $"the credentials do not allow 'subscribe' on '{topicFilter}'"), false);
        }

        // Granted as asked; each message goes out at the lower of this and its publish's QoS (docs/mqtt.md, QoS).
        var qos = requested.Qos;
        MqttSubscriptionSink? previous;
        lock (_session!.Subscriptions)
        {
            _session.Subscriptions.Remove(filter, out previous);
            if (previous is null && _session.Subscriptions.Count >= Node.Options.MaxSubscriptionsPerConnection)
            {
                return (Failed(MqttReasonCodes.QuotaExceeded, $"a connection may hold at most {Node.Options.MaxSubscriptionsPerConnection} subscriptions (Relay:Ingress:MaxSubscriptionsPerConnection)"), false);
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
                sink.Subscription = await Node.StartSubscriptionAsync(sink, App, topicFilter, since?.Epoch, since?.Seq, null, Ready(since), fromRegistration: since is null, arrivedTicks, takeWhatHistoryHolds: since is not null).ConfigureAwait(false);
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
            LogSubscribeRefused(Logger, ConnectionId, filter, v5Code, reason);
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
        SaveSession();
    }

    /// <summary>
    /// What a subscription by name does when it goes live: its position becomes the session's for the channel (the store
    /// keeps it, so the next node recovers after it), and a recovery from <paramref name="since"/> that history could not
    /// give is logged (the client gets live messages from here; what it missed on that channel is gone).
    /// </summary>
    private Subscriptions.SubscriptionReady Ready(ChannelPosition? since)
    {
        var session = _session!;
        return (channel, position, recovered) =>
        {
            // Recovered: the messages after `since` follow, each marking its seq as given.
            if (position is { } at)
            {
                session.Started(channel, since is { } after && recovered ? after : at);
            }

            if (since is { } from && !recovered)
            {
                LogNotRecovered(Logger, ConnectionId, channel, from.Seq, position?.Seq ?? 0);
            }
        };
    }

    // A persistent session's subscriptions changed: the store gets them (a node that dies keeps what it last wrote).
    private void SaveSession()
    {
        if (_session is { ExpirySeconds: > 0 } session)
        {
            _ = _broker.SaveAsync(session, held: true);
        }
    }

    /// <summary>
    /// Subscribes again what a session held on another node (<see cref="MqttStoredSession"/>), checked against this
    /// connection's capabilities, without retained messages. Channel names first, each recovered from history after its
    /// position; then patterns: each channel a pattern had delivered is first recovered by name through a catch-up
    /// subscription of its own, until the pattern is live, so what history holds comes before the pattern's live copies
    /// (the session sends a message once). Shared subscriptions last: the group is joined again, live (what its other
    /// members were given meanwhile is theirs).
    /// </summary>
    private async Task RestoreAsync(MqttStoredSession state)
    {
        var positions = new Dictionary<string, MqttStoredSession.Position>(StringComparer.Ordinal);
        foreach (var position in state.Positions)
        {
            positions[position.Channel] = position;
        }

        var patterns = new List<MqttStoredSession.Subscription>();
        var shared = new List<MqttStoredSession.Subscription>();
        foreach (var stored in state.Subscriptions)
        {
            if (stored.Filter.StartsWith("$share/", StringComparison.Ordinal))
            {
                shared.Add(stored);
                continue;
            }

            if (ChannelName.IsPattern(stored.Filter))
            {
                patterns.Add(stored);
                continue;
            }

            positions.Remove(stored.Filter, out var at);
            await RestoreOneAsync(stored, at is null ? null : new ChannelPosition(at.Epoch, at.Seq)).ConfigureAwait(false);
        }

        var catchUps = new List<(Subscriptions.Subscription Subscription, MqttSubscriptionSink Sink)>();
        try
        {
            foreach (var stored in patterns)
            {
                var matcher = new PatternIndex<string>();
                matcher.Add(stored.Filter, stored.Filter);
                var matched = new List<string>(1);
                foreach (var (channel, at) in positions.ToArray())
                {
                    matched.Clear();
                    matcher.Match(channel, matched);
                    if (matched.Count == 0 || !_principal!.Capabilities.Allows(channel, Operations.Subscribe)
                        || !_principal.Capabilities.Allows(stored.Filter, Operations.Subscribe))
                    {
                        continue;
                    }

                    positions.Remove(channel);
                    var requested = new MqttSubscription(stored.Filter, stored.Options);
                    var sink = new MqttSubscriptionSink(_session!, stored.Filter, requested.Qos)
                    {
                        NoLocalClientId = V5 && requested.NoLocal ? _principal.ClientId : null,
                        RetainAsPublished = V5 && requested.RetainAsPublished,
                        Identifier = V5 ? stored.Identifier : 0,
                    };

                    // Its deliveries carry the pattern's Subscription Identifier, as the pattern's own will.
                    if (sink.Identifier != 0)
                    {
                        _session!.IdentifiedForAdding.Add(stored.Filter, sink);
                    }

                    catchUps.Add((await Node.StartSubscriptionAsync(sink, App, channel, at.Epoch, at.Seq, null, Ready(new ChannelPosition(at.Epoch, at.Seq)), takeWhatHistoryHolds: true).ConfigureAwait(false), sink));
                }

                await RestoreOneAsync(stored, null).ConfigureAwait(false);
            }

            foreach (var stored in shared)
            {
                await RestoreOneAsync(stored, null).ConfigureAwait(false);
            }
        }
        catch (RelayException ex)
        {
            LogRestoreFailed(Logger, ConnectionId, ex.Error.Message);
        }
        finally
        {
            // Every pattern is live now: each channel's messages reach the session through it.
            foreach (var (catchUp, sink) in catchUps)
            {
                await Node.RemoveSubscriptionAsync(catchUp).ConfigureAwait(false);
                if (sink.Identifier != 0)
                {
                    _session!.Identified?.Remove(sink.TopicFilter, sink);
                }
            }
        }

        // What history gave back of the deliveries owed again went with their packet ids; the rest is gone (logged per
        // channel above), and its ids are free.
        Unreserve(_session!.DropResends());

        SaveSession();
    }

    // One stored subscription again, without retained messages (Retain Handling 2); a refusal is logged.
    private async ValueTask RestoreOneAsync(MqttStoredSession.Subscription stored, ChannelPosition? since)
    {
        var (code, _) = await SubscribeOneAsync(new MqttSubscription(stored.Filter, (byte)((stored.Options & 0x0F) | 0x20)), stored.Identifier, since).ConfigureAwait(false);
        if (code >= 0x80)
        {
            LogRestoreRefused(Logger, ConnectionId, stored.Filter, code);
        }
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
            LogRequestFailed(Logger, ex, ConnectionId);
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
                session.Detach(this, Node.Time.GetUtcNow());
                if (session.ExpirySeconds == 0)
                {
                    await _broker.DiscardAsync(session).ConfigureAwait(false);
                }
            }

            await PublishWillAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRequestFailed(Logger, ex, ConnectionId);
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

    [LoggerMessage(EventId = 1432, Level = LogLevel.Warning, Message = "MQTT connection {ConnectionId}: the resumed session's messages of '{Channel}' after seq {Since} are no longer all in history (its window passed them, or the channel was reset): the client gets those history still holds, after seq {Now}")]
    private static partial void LogNotRecovered(ILogger logger, string connectionId, string channel, long since, long now);

    [LoggerMessage(EventId = 1433, Level = LogLevel.Information, Message = "MQTT connection {ConnectionId}: the resumed session's subscription to '{Filter}' was not made again (0x{ReasonCode:X2}); the session goes on without it")]
    private static partial void LogRestoreRefused(ILogger logger, string connectionId, string filter, byte reasonCode);

    [LoggerMessage(EventId = 1434, Level = LogLevel.Warning, Message = "MQTT connection {ConnectionId}: resuming the session stopped: {Reason}")]
    private static partial void LogRestoreFailed(ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 1430, Level = LogLevel.Debug, Message = "MQTT connection {ConnectionId}: subscription to '{Filter}' refused (0x{ReasonCode:X2}): {Reason}")]
    private static partial void LogSubscribeRefused(ILogger logger, string connectionId, string filter, byte reasonCode, string reason);
}
