using System.Buffers;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Channels;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.Ingress.Mqtt.Codec;
using Relay.Ingress.Realtime;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// PUBLISH from the client: topic = channel, payload bytes kept exactly (a payload that is one JSON value is marked JSON,
/// so WebSocket and SSE subscribers get it as JSON; any other is delivered to them base64). QoS 1 is acknowledged
/// (PUBACK) and QoS 2 received (PUBREC) only once routing has sequenced the message; a publish the credentials or the
/// namespace do not allow gets MQTT 5's PUBACK 0x87, and is acknowledged and dropped for MQTT 3.1.1, which has no
/// negative acknowledgement (docs/mqtt.md).
/// </summary>
internal sealed partial class MqttConnection
{
    /// <summary>Topic aliases an MQTT 5 client may set on a connection (CONNACK's Topic Alias Maximum): a device's topics, one string each.</summary>
    private const int MaxTopicAliases = 32;

    private ValueTask PublishAsync(MqttPublish publish)
    {
        var channel = publish.Topic;

        // Whether the topic is a valid channel name, when the alias handling below already knows (checked once a publish).
        bool? valid = null;
        string? invalid = null;
        if (publish.Properties?.TopicAlias is { } alias)
        {
            // MQTT 5 §3.3.2.3.4: a topic with an alias sets it; an empty topic uses it. Aliases live as long as the connection.
            if (alias > MaxTopicAliases)
            {
                throw new MqttProtocolException(MqttReasonCodes.TopicAliasInvalid, $"topic alias {alias} is above the Topic Alias Maximum of {MaxTopicAliases}");
            }

            var aliases = Side.TopicAliases ??= new string?[MaxTopicAliases + 1];
            if (channel.Length > 0)
            {
                // Only a topic this publish may go to is kept: an invalid one (a topic may be 64 KiB, a channel name
                // 255 bytes) is refused below and unsets the alias, so no client holds more than its aliases' names.
                valid = ChannelName.IsValidTopicName(channel, out invalid);
                aliases[alias] = valid.Value ? channel : null;
            }
            else
            {
                channel = aliases[alias] ?? throw MqttProtocolException.Protocol($"topic alias {alias} was not set on this connection");
                valid = true;
            }
        }

        var retain = publish.Retain;
        if (retain && Settings.MaxRetainedPerApp == 0)
        {
            // Relay:Mqtt:MaxRetainedPerApp=0 turns retained messages off: MQTT 5 was told (Retain Available 0); 3.1.1 is published unretained.
            retain = V5 ? throw new MqttProtocolException(MqttReasonCodes.RetainNotSupported, "retained messages are off on this server (CONNACK's Retain Available is 0)") : false;
        }

        if (publish.Qos == 2)
        {
            lock (AwaitingReleaseSet)
            {
                if (AwaitingReleaseSet.Contains(publish.PacketId))
                {
                    // A resend of a QoS 2 publish already received: answered again, never published twice.
                    SendAck(MqttPacketType.PubRec, publish.PacketId);
                    return ValueTask.CompletedTask;
                }

                if (_side?.RoutingQos2?.Resent is { } routing && routing.TryGetValue(publish.PacketId, out var resent))
                {
                    // A resend while its first copy is still being routed: not counted again toward the Receive Maximum
                    // and not published again; it gets its PUBREC when the first copy gets its own.
                    routing[publish.PacketId] = resent + 1;
                    return ValueTask.CompletedTask;
                }
            }
        }

        if (publish.Qos > 0)
        {
            CountReceived();
        }

        byte refusal = 0;
        string? reason = null;
        if (!(valid ?? ChannelName.IsValidTopicName(channel, out invalid)))
        {
            (refusal, reason) = (MqttReasonCodes.TopicNameInvalid, invalid);
        }
        else if (!_principal!.Capabilities.Allows(channel, Operations.Publish))
        {
            (refusal, reason) = (MqttReasonCodes.NotAuthorized, $"the credentials do not allow 'publish' on '{channel}'");
        }
        else if (!Node.Namespaces.For(channel).ClientPublish)
        {
            (refusal, reason) = (MqttReasonCodes.NotAuthorized, $"clients may not publish in namespace '{ChannelName.NamespaceOf(channel)}'");
        }
        else if (publish.Payload.Length > Node.Options.MaxMessageBytes)
        {
            (refusal, reason) = (MqttReasonCodes.QuotaExceeded, $"a payload of {publish.Payload.Length} bytes is larger than Relay:Ingress:MaxMessageBytes ({Node.Options.MaxMessageBytes})");
        }
        else if (!(Side.PublishRate ??= NewPublishRate()).TryTake(Node.Time.GetTimestamp(), Node.Time.TimestampFrequency))
        {
            (refusal, reason) = (MqttReasonCodes.QuotaExceeded, $"publish rate above {Node.Options.PublishRatePerSecond} per second on this connection (Relay:Ingress:PublishRatePerSecond)");
        }
        else if (Node.AppLimits.TryPublish(App) is { } overAppRate)
        {
            (refusal, reason) = (MqttReasonCodes.QuotaExceeded, overAppRate.Message);
        }

        if (refusal != 0)
        {
            LogPublishRefused(Logger, ConnectionId, channel, refusal, reason!);
            Acknowledge(publish.Qos, publish.PacketId, V5 ? refusal : (byte)0, reason);
            return ValueTask.CompletedTask;
        }

        // The one copy: the input's bytes become the message's, which history keeps. A retained publish's array is noted
        // for Retain As Published (an empty one made of its own: ToArray gives every empty payload the one shared array).
        var data = retain && publish.Payload.IsEmpty ? new byte[publish.Payload.Length] : publish.Payload.ToArray();
        if (retain)
        {
            _broker.MarkRetained(data);
        }

        // MQTT 5 §3.3.2.3: the application properties travel with the message to MQTT 5 subscribers (none: null).
        var properties = MqttMessageProperties.From(publish.Properties, Node.Time.GetUtcNow().ToUnixTimeMilliseconds(), publish.Qos);
        var durable = publish.Qos == 2 && _broker.DurableReceipts(_session);
        Task? turn = null;
        TaskCompletionSource? sent = null;

        // A connection that never published at QoS 2 has no QoS 2 state (it is never dropped once made): its QoS 0 and 1
        // publishes take no lock and make no set here.
        if (publish.Qos == 2 || (_side is { } side && Volatile.Read(ref side.RoutingQos2) is not null))
        {
            lock (AwaitingReleaseSet)
            {
                var routing = _side?.RoutingQos2;
                if (publish.Qos == 2)
                {
                    // Its packet id is taken until its PUBREC (resends meanwhile wait for it, above).
                    (routing ??= Side.RoutingQos2 = new MqttQos2Routing()).Resent[publish.PacketId] = 0;
                }

                // While a publish waits for its receipt, those after it wait their turn: they reach routing in the order sent.
                if (durable || routing?.LastSent is { IsCompleted: false })
                {
                    turn = routing!.LastSent;
                    sent = new TaskCompletionSource();
                    routing.LastSent = sent.Task;
                }
            }
        }

        // Asked now, in the order the publishes came; routing gets each once its receipt is written (below).
        var receipt = durable ? _broker.ReceiveAsync(_session!, publish.PacketId).AsTask() : null;
        return RouteAsync(channel, data, properties, publish.Qos, publish.PacketId, retain, receipt, turn, sent);
    }

    /// <summary>The connection's publish rate (<c>Relay:Ingress:PublishRatePerSecond</c>), made full on its first publish: a subscriber that never publishes holds none.</summary>
    private TokenBucket NewPublishRate()
    {
        var options = Node.Options;
        return new TokenBucket(options.PublishRatePerSecond, options.PublishBurst == 0 ? options.PublishRatePerSecond * 2 : options.PublishBurst, Node.Time.GetTimestamp());
    }

    /// <summary>
    /// Routes one publish and acknowledges it. A QoS 2 publish of a persistent session over a durable session store
    /// (<paramref name="receipt"/>) is routed with the idempotency id its receipt holds, written before routing: whenever
    /// the node dies, the client's resend (DUP, any node) carries the same packet id, finds the same id and routing,
    /// which keeps an id with the message in one step, drops it if the first copy got through (docs/mqtt.md, "Guarantees
    /// under failure"). A receipt written after routing (or a packet id written before PUBREC alone) leaves a moment where
    /// a kill publishes the message and forgets it. <paramref name="turn"/>: the previous publish's way to routing, which
    /// this one follows; <paramref name="sent"/> completes once this one is on its way.
    /// </summary>
    private async ValueTask RouteAsync(string channel, byte[] data, MessageProperties? properties, byte qos, ushort packetId, bool retain, Task<string>? receipt, Task? turn, TaskCompletionSource? sent)
    {
        RoutingReply reply;
        var isJson = JsonPayload.IsOneValue(data);
        try
        {
            if (retain && data.Length > 0 && !await HasRetainedRoomAsync(channel).ConfigureAwait(false))
            {
                var reason = $"the app holds retained messages on {Settings.MaxRetainedPerApp} topics already (Relay:Mqtt:MaxRetainedPerApp): clear one with an empty retained publish";
                LogPublishRefused(Logger, ConnectionId, channel, MqttReasonCodes.QuotaExceeded, reason);
                Acknowledge(qos, packetId, V5 ? MqttReasonCodes.QuotaExceeded : (byte)0, reason);
                return;
            }

            string? id = null;
            try
            {
                id = receipt is null ? null : await receipt.ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
            {
                LogReceiptFailed(Logger, ex, ConnectionId, packetId);
            }

            if (turn is not null)
            {
                await turn.ConfigureAwait(false);
            }

            if (receipt is not null && id is null)
            {
                reply = new ErrorReply(new Relay.Core.Protocol.RelayError(Relay.Core.Protocol.ErrorCodes.Internal, "the session store did not answer; the message was not published"));
            }
            else
            {
                var item = new PublishItem(null, data, isJson, id) { Properties = properties };
                try
                {
                    using var activity = RelayTracing.Start(RelayTracing.IngressReceive, ActivityKind.Consumer, null, channel);
                    ValueTask<RoutingReply> sending;
                    try
                    {
                        sending = Node.Bus.SendToRoutingAsync(new PublishRequest(App, channel, [item], _principal!.ClientId, activity?.Id), Node.Stopping);
                    }
                    finally
                    {
                        // On the wire (or failed): the next publish may go.
                        sent?.TrySetResult();
                    }

                    reply = await sending.ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
                {
                    LogRequestFailed(Logger, ex, ConnectionId);
                    reply = new ErrorReply(new Relay.Core.Protocol.RelayError(Relay.Core.Protocol.ErrorCodes.Internal, "internal error; the message was not published"));
                }
            }
        }
        finally
        {
            sent?.TrySetResult();
        }

        if (reply is PublishReply published)
        {
            Node.Metrics.Published(1);

            // Kept before the acknowledgement, so a subscriber that subscribes once the publisher has its PUBACK gets it.
            if (retain)
            {
                await _broker.RetainAsync(new RelayMessage { App = App, Channel = channel, Epoch = published.Epoch, Seq = published.Seqs[0], Data = data, DataIsJson = isJson, Properties = properties }).ConfigureAwait(false);
            }

            if (qos == 2)
            {
                // From unacknowledged to awaiting PUBREL in one step, so the Receive Maximum count never holds it twice.
                lock (AwaitingReleaseSet)
                {
                    AwaitingReleaseSet.Add(packetId);
                    Interlocked.Decrement(ref _receivedUnacknowledged);
                }
            }

            Acknowledge(qos, packetId, 0, null, counted: qos == 1);
            return;
        }

        var error = reply is ErrorReply { Error: var e } ? e.Message : $"unexpected routing reply {reply.GetType().Name}";
        LogPublishFailed(Logger, ConnectionId, channel, error);
        if (V5)
        {
            Acknowledge(qos, packetId, MqttReasonCodes.UnspecifiedError, error);
        }
        else if (qos > 0)
        {
            // MQTT 3.1.1 has no failed PUBACK: the connection closes unacknowledged, so the client knows it was not taken.
            Close(0, null);
        }
    }

    /// <summary>
    /// A QoS 1 or 2 publish taken in: with those received before and not acknowledged yet (PUBACK, PUBREC) and those
    /// awaiting PUBREL, more than CONNACK's Receive Maximum is MQTT 5's DISCONNECT 0x93. MQTT 3.1.1 has no such limit.
    /// </summary>
    private void CountReceived()
    {
        int held;
        lock (AwaitingReleaseSet)
        {
            held = Interlocked.Increment(ref _receivedUnacknowledged) + AwaitingReleaseSet.Count;
        }

        if (held > Settings.ReceiveMaximum && V5)
        {
            throw new MqttProtocolException(MqttReasonCodes.ReceiveMaximumExceeded, $"more than the Receive Maximum of {Settings.ReceiveMaximum} QoS 1 and 2 publishes unacknowledged or awaiting PUBREL");
        }
    }

    /// <summary>
    /// PUBACK (QoS 1) or PUBREC (QoS 2) with <paramref name="reasonCode"/>; nothing for QoS 0. <paramref name="counted"/>:
    /// the publish still counts as received and unacknowledged (a QoS 2 one taken has moved to awaiting PUBREL). A QoS 2
    /// publish resent while it was being routed gets a PUBREC for each copy.
    /// </summary>
    private void Acknowledge(byte qos, ushort packetId, byte reasonCode, string? reason, bool counted = true)
    {
        if (qos == 0)
        {
            return;
        }

        var copies = 1;
        if (qos == 2)
        {
            lock (AwaitingReleaseSet)
            {
                if (_side?.RoutingQos2?.Resent is { } routing && routing.Remove(packetId, out var resent))
                {
                    copies += resent;
                }
            }
        }

        if (counted)
        {
            Interlocked.Decrement(ref _receivedUnacknowledged);
        }

        var type = qos == 1 ? MqttPacketType.PubAck : MqttPacketType.PubRec;
        if (V5 && _reasonStrings && reason is not null)
        {
            var ack = new MqttAck(type) { PacketId = packetId, ReasonCode = reasonCode, Properties = new MqttProperties { ReasonString = reason } };
            for (var i = 0; i < copies; i++)
            {
                Send(ack);
            }

            return;
        }

        for (var i = 0; i < copies; i++)
        {
            SendAck(type, packetId, reasonCode);
        }
    }

    /// <summary>PUBREL: the QoS 2 exchange ends with PUBCOMP (MQTT 5: 0x92 for an id never received).</summary>
    private void Released(ushort packetId)
    {
        bool known;
        lock (AwaitingReleaseSet)
        {
            known = AwaitingReleaseSet.Remove(packetId);
        }

        if (_broker.DurableReceipts(_session))
        {
            // The receipt goes before PUBCOMP: with PUBCOMP the client may give the packet id to a new message, which a
            // receipt left behind (this node dying in between) would have routing drop as a resend.
            _ = ReleaseReceiptAsync(packetId, known);
            return;
        }

        SendAck(MqttPacketType.PubComp, packetId, known ? (byte)0 : MqttReasonCodes.PacketIdentifierNotFound);
    }

    private async Task ReleaseReceiptAsync(ushort packetId, bool known)
    {
        try
        {
            known |= await _broker.ReleaseAsync(_session!, packetId).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // No PUBCOMP: the client sends PUBREL again on its next connection (MQTT §4.4).
            LogReceiptFailed(Logger, ex, ConnectionId, packetId);
            Close(V5 ? MqttReasonCodes.UnspecifiedError : (byte)0, V5 ? "the session store did not answer; send PUBREL again on the next connection" : null);
            return;
        }

        SendAck(MqttPacketType.PubComp, packetId, known ? (byte)0 : MqttReasonCodes.PacketIdentifierNotFound);
    }

    /// <summary>The client's QoS 2 publishes awaiting PUBREL (all routed: the read loop has ended), for the session.</summary>
    private ushort[] AwaitingRelease()
    {
        if (_side is not { } side || Volatile.Read(ref side.AwaitingRelease) is not { } awaiting)
        {
            return [];
        }

        lock (awaiting)
        {
            return awaiting.Count == 0 ? [] : [.. awaiting];
        }
    }

    /// <summary>
    /// The session's QoS 2 publishes awaiting PUBREL, as its last connection left them: resends are not published again,
    /// and they count toward the Receive Maximum until released.
    /// </summary>
    internal void AwaitRelease(ushort[] packetIds)
    {
        var awaiting = AwaitingReleaseSet;
        lock (awaiting)
        {
            awaiting.UnionWith(packetIds);
        }
    }

    /// <summary>The last will, when the connection ended without a normal DISCONNECT and the credentials allow it (MQTT 5's will delay is not applied).</summary>
    private async ValueTask PublishWillAsync()
    {
        // Over Redis the will's entry goes first (any end); one another node took, this one presumed dead, is not
        // published again (docs/mqtt.md, "Guarantees under failure").
        var ours = _side?.WillEntry is not { } entry || _clientId is null || await _broker.ReleaseWillAsync(App, _clientId, entry).ConfigureAwait(false);
        if (!ours || _disconnectedCleanly || _side?.Will is not { WillTopic: { } topic } will || _principal is not { } principal
            || !principal.Capabilities.Allows(topic, Operations.Publish) || !Node.Namespaces.For(topic).ClientPublish)
        {
            return;
        }

        var (request, retain) = _broker.WillOf(will, principal.AppId, principal.ClientId, V5);

        // MQTT 5 §3.1.3.2.2: the will waits out its Will Delay Interval, or the session's end if that comes first; a
        // connection that resumes the session meanwhile cancels it. A clean session ends now, so its will goes now.
        var delay = V5 ? Math.Min(will.WillProperties?.WillDelayInterval ?? 0, _session?.ExpirySeconds ?? 0) : 0;
        if (delay > 0 && _session is { Discarded: false } session)
        {
            session.DelayWill(new MqttWill(request, retain), Node.Time.GetUtcNow().UtcTicks + (delay * TimeSpan.TicksPerSecond));
            return;
        }

        await _broker.PublishWillAsync(new MqttWill(request, retain)).ConfigureAwait(false);
    }

    // Whether the app may retain one more topic; a store that does not answer lets the publish go (its retain is then
    // logged as not kept, RetainAsync).
    private async ValueTask<bool> HasRetainedRoomAsync(string channel)
    {
        try
        {
            return await _broker.Retained.HasRoomForAsync(App, channel, Settings.MaxRetainedPerApp, Node.Stopping).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            return true;
        }
    }

    [LoggerMessage(EventId = 1420, Level = LogLevel.Debug, Message = "MQTT connection {ConnectionId}: publish to '{Channel}' refused (0x{ReasonCode:X2}): {Reason}")]
    private static partial void LogPublishRefused(ILogger logger, string connectionId, string channel, byte reasonCode, string reason);

    [LoggerMessage(EventId = 1424, Level = LogLevel.Warning, Message = "MQTT connection {ConnectionId}: the receipt of QoS 2 packet id {PacketId} could not be written to or dropped from the session store")]
    private static partial void LogReceiptFailed(ILogger logger, Exception exception, string connectionId, ushort packetId);

    [LoggerMessage(EventId = 1421, Level = LogLevel.Warning, Message = "MQTT connection {ConnectionId}: publish to '{Channel}' failed: {Error}")]
    private static partial void LogPublishFailed(ILogger logger, string connectionId, string channel, string error);
}
