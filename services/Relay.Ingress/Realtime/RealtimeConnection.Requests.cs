using System.Diagnostics;
using System.Text.Json;
using Relay.Auth.Verification;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Channels;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Realtime;

internal sealed partial class RealtimeConnection
{
    /// <summary>History's default page (spec: 100).</summary>
    private const int DefaultHistoryLimit = 100;

    /// <summary>History's largest page (spec: 1000).</summary>
    private const int MaxHistoryLimit = 1000;

    // The channel of the last publish whose name, capability and namespace checks passed, for which principal, and
    // the channel as JSON for the ok once it was published to twice in a row. Only the receive loop touches it, before
    // a publish's first await (pipelined publishes run their continuations elsewhere).
    private (string? Channel, RelayPrincipal? Principal, byte[]? ChannelJson) _publishChecked;

    private async ValueTask HandleAsync(ClientRequest request)
    {
        if (request.Error is not null)
        {
            ReplyError(request.Ref, request.Error);
            return;
        }

        try
        {
            switch (request.Type)
            {
                case RequestType.Ping:
                    Reply(request.Ref, "pong", static (_, _) => { }, 0);
                    break;
                case RequestType.Publish:
                    await PublishAsync(request).ConfigureAwait(false);
                    break;
                case RequestType.Subscribe:
                    await SubscribeAsync(request).ConfigureAwait(false);
                    break;
                case RequestType.Unsubscribe:
                    await UnsubscribeAsync(request).ConfigureAwait(false);
                    break;
                case RequestType.History:
                    await HistoryAsync(request).ConfigureAwait(false);
                    break;
                case RequestType.Auth:
                    await AuthenticateAsync(request).ConfigureAwait(false);
                    break;
                case RequestType.Presence:
                    await PresenceAsync(request).ConfigureAwait(false);
                    break;
                default:
                    ReplyError(request.Ref, RelayError.BadRequest($"unknown type '{request.TypeName}'"));
                    break;
            }
        }
        catch (RelayException ex)
        {
            ReplyError(request.Ref, ex.Error);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
            ReplyError(request.Ref, new RelayError(ErrorCodes.Internal, "internal error; the request was not completed"));
        }
    }

    private async ValueTask PublishAsync(ClientRequest request)
    {
        // A channel this connection just published to, with the same principal, passed these checks already (namespace
        // policies never change). Compared by value: the receive loop moves between threads, each with its NameCache.
        // The principal is read before the checks: one that changes meanwhile does not match what is remembered.
        var principal = _principal;
        var checkedChannel = request.Channel is { } named && ReferenceEquals(principal, _publishChecked.Principal) && string.Equals(named, _publishChecked.Channel, StringComparison.Ordinal);
        var channel = checkedChannel ? request.Channel! : RequireChannel(request, allowPattern: false);
        if (!checkedChannel)
        {
            Require(channel, Operations.Publish);
        }

        if (!_publishRate.TryTake(_inputTimestamp, _node.Time.TimestampFrequency))
        {
            throw new RelayException(ErrorCodes.RateLimited, $"publish rate above {_node.Options.PublishRatePerSecond} per second on this connection; slow down or batch over HTTP");
        }

        if (!checkedChannel)
        {
            if (!_node.Namespaces.For(channel).ClientPublish)
            {
                throw new RelayException(ErrorCodes.Forbidden, $"clients may not publish in namespace '{ChannelName.NamespaceOf(channel)}'; publish from your server with a key over HTTP");
            }

            _publishChecked = (channel, principal, null);
        }

        if (!request.HasData)
        {
            throw new RelayException(RelayError.BadRequest("missing field 'data'"));
        }

        var size = request.Data.Length + (request.Name?.Length ?? 0);
        if (size > _node.Options.MaxMessageBytes)
        {
            throw new RelayException(ErrorCodes.MessageTooLarge, $"message of {size} bytes is larger than maxMessageBytes ({_node.Options.MaxMessageBytes})");
        }

        // A channel published to again gets its ok put together from bytes (the channel as JSON is kept for it).
        var channelJson = checkedChannel ? _publishChecked.ChannelJson ??= ServerFrames.JsonString(channel) : null;
        if (_node.AppLimits.TryPublish(App) is { } overAppRate)
        {
            throw new RelayException(overAppRate);
        }

        var item = new PublishItem(request.Name, request.Data, DataIsJson: true, request.Id);
        using var activity = RelayTracing.StartFromClient(RelayTracing.IngressReceive, ActivityKind.Consumer, request.TraceParent, channel);
        var reply = await _node.Bus.SendToRoutingAsync(new PublishRequest(App, channel, [item], _principal.ClientId, TraceParent: activity?.Id), _node.Stopping).ConfigureAwait(false);
        var published = Expect<PublishReply>(reply);
        _node.Metrics.Published(1);
        if (channelJson is not null)
        {
            Enqueue(ServerFrames.PublishOk(request.Ref, channelJson, published.Seqs[0]));
            return;
        }

        Reply(request.Ref, "ok", static (writer, state) =>
        {
            writer.WriteString("channel"u8, state.channel);
            writer.WriteNumber("seq"u8, state.seq);
        }, (channel, seq: published.Seqs[0]));
    }

    private async ValueTask SubscribeAsync(ClientRequest request)
    {
        var channel = RequireChannel(request, allowPattern: true);
        Require(channel, Operations.Subscribe);
        TakeRead();
        var isPattern = ChannelName.IsPattern(channel);
        if (isPattern && (request.SinceEpoch is not null || request.Rewind is not null))
        {
            throw new RelayException(RelayError.BadRequest("pattern subscriptions get live messages only: 'since' and 'rewind' need a channel name"));
        }

        if (request.SinceEpoch is not null && request.Rewind is not null)
        {
            throw new RelayException(RelayError.BadRequest("use either 'since' or 'rewind', not both"));
        }

        if (request.Rewind is not null)
        {
            // 'since' recovers what this subscription missed; 'rewind' reads history the client never subscribed for.
            Require(channel, Operations.History);
        }

        if (UntrackSubscription(channel, out var previous))
        {
            await _node.RemoveSubscriptionAsync(previous).ConfigureAwait(false);
        }

        if (_subscriptions.Count >= _node.Options.MaxSubscriptionsPerConnection)
        {
            throw new RelayException(ErrorCodes.RateLimited, $"a connection may hold at most {_node.Options.MaxSubscriptionsPerConnection} subscriptions; unsubscribe first or use a pattern");
        }


        var subscription = await _node.StartSubscriptionAsync(this, App, channel, request.SinceEpoch, request.SinceSeq, request.Rewind, (channel, position, recovered) =>
        {
            if (position is not { } at)
            {
                Reply(request.Ref, "ok", static (writer, channel) => writer.WriteString("channel"u8, channel), channel);
                return;
            }

            Reply(request.Ref, "ok", static (writer, state) =>
            {
                writer.WriteString("channel"u8, state.channel);
                writer.WriteString("epoch"u8, state.at.Epoch);
                writer.WriteNumber("seq"u8, state.at.Seq);
                writer.WriteBoolean("recovered"u8, state.recovered);
            }, (channel, at, recovered));
        }).ConfigureAwait(false);
        await TrackSubscriptionAsync(subscription).ConfigureAwait(false);
    }

    private async ValueTask PresenceAsync(ClientRequest request)
    {
        var channel = RequireChannel(request, allowPattern: false);
        if (request.Action == "get")
        {
            if ((_principal.Capabilities.OperationsFor(channel) & (Operations.Presence | Operations.Subscribe)) == Operations.None)
            {
                throw new RelayException(RelayError.Forbidden("presence", channel));
            }

            TakeRead();
            var members = Expect<PresenceReply>(await _node.Bus.SendToRoutingAsync(new PresenceGetRequest(App, channel), _node.Stopping).ConfigureAwait(false));
            Reply(request.Ref, "ok", static (writer, state) => ReplyBodies.WriteMembers(writer, state.channel, state.Members), (channel, members.Members));
            return;
        }

        if (request.Action is not ("enter" or "update" or "leave"))
        {
            throw new RelayException(RelayError.BadRequest("field 'action' must be enter, update, leave or get"));
        }

        Require(channel, Operations.Presence);
        if (!_node.Namespaces.For(channel).Presence)
        {
            throw new RelayException(ErrorCodes.Forbidden, $"presence is off for namespace '{ChannelName.NamespaceOf(channel)}'");
        }

        if (_principal.ClientId is not { } clientId)
        {
            throw new RelayException(RelayError.BadRequest("presence needs a clientId: connect with ?clientId= (key) or a token with 'sub'"));
        }

        CheckPresenceChange(channel, request.Action, request.Data.Length);
        // Tracked: the channels where this connection may be a member, which its close leaves.
        var leaving = request.Action == "leave";
        var changed = TrackPresence(channel, present: !leaving);
        var reply = await _node.Bus.SendToRoutingAsync(new PresenceRequest(App, channel, request.Action, clientId, ConnectionId, request.Data, _node.NodeId), _node.Stopping).ConfigureAwait(false);
        if (changed && reply is ErrorReply { Error.Code: var code })
        {
            // Refused (the channel's presence set is full): nothing was stored, so there is nothing to leave later. Not
            // known to be applied (the bus down, routing silent): a leave may not have happened, so the close leaves
            // again; an enter may have, and the close's leave is then needed (and harmless if not).
            var unsure = code is ErrorCodes.Unavailable or ErrorCodes.Internal;
            if (leaving == unsure)
            {
                TrackPresence(channel, present: leaving);
            }
        }

        Expect<PresenceReply>(reply);
        Reply(request.Ref, "ok", static (writer, channel) => writer.WriteString("channel"u8, channel), channel);
        await RecheckPresenceAsync(channel).ConfigureAwait(false);
    }

    /// <summary>A connection that goes away leaves every channel it entered.</summary>
    private async ValueTask LeaveAllPresenceAsync()
    {
        var entered = UntrackAllPresence();
        if (entered.Length == 0 || _principal.ClientId is not { } clientId)
        {
            return;
        }

        foreach (var channel in entered)
        {
            // A leave the bus did not take (Redis down, routing not answering) is sent again by the node until it goes
            // through: nothing else would remove the member while the node lives.
            var leave = new PresenceRequest(App, channel, "leave", clientId, ConnectionId, default, _node.NodeId);
            try
            {
                if (await _node.Bus.SendToRoutingAsync(leave, CancellationToken.None).ConfigureAwait(false) is ErrorReply { Error.Code: ErrorCodes.Unavailable or ErrorCodes.Internal })
                {
                    _node.PresenceLeaves.Retry(leave);
                }
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                LogRequestFailed(_logger, ex, ConnectionId);
                _node.PresenceLeaves.Retry(leave);
            }
        }
    }

    private async ValueTask UnsubscribeAsync(ClientRequest request)
    {
        var channel = RequireChannel(request, allowPattern: true);
        if (UntrackSubscription(channel, out var subscription))
        {
            await _node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
        }

        Reply(request.Ref, "ok", static (writer, channel) => writer.WriteString("channel"u8, channel), channel);
    }

    private async ValueTask HistoryAsync(ClientRequest request)
    {
        var channel = RequireChannel(request, allowPattern: false);
        Require(channel, Operations.History);
        TakeRead();
        var limit = request.Limit ?? DefaultHistoryLimit;
        if (limit > MaxHistoryLimit)
        {
            throw new RelayException(RelayError.BadRequest($"field 'limit' must be at most {MaxHistoryLimit}"));
        }

        var pageBytes = _node.Options.HistoryPageBytes;
        var reply = await _node.Bus.SendToRoutingAsync(new HistoryRequest(App, channel, limit, request.Before, MaxBytes: pageBytes), _node.Stopping).ConfigureAwait(false);
        var history = Expect<HistoryReply>(reply);
        Reply(request.Ref, "ok", static (writer, state) => ReplyBodies.WriteHistory(writer, state.channel, state.history, state.pageBytes), (channel, history, pageBytes));
    }

    private async ValueTask AuthenticateAsync(ClientRequest request)
    {
        if (string.IsNullOrEmpty(request.Token))
        {
            throw new RelayException(RelayError.BadRequest("missing field 'token'"));
        }

        var keysVersion = _authenticator.KeysVersion;
        var result = _authenticator.AuthenticateToken(request.Token);
        if (!result.Succeeded)
        {
            throw new RelayException(result.Error);
        }

        var current = _principal;
        if (result.Principal.AppId != current.AppId)
        {
            throw new RelayException(ErrorCodes.InvalidCredentials, "the new token is for another app than this connection");
        }

        if (current.ClientId is not null && result.Principal.ClientId != current.ClientId)
        {
            throw new RelayException(ErrorCodes.InvalidCredentials, $"the new token's clientId must stay '{current.ClientId}' on this connection");
        }

        await RenewAsync(request.Ref, result.Principal, keysVersion).ConfigureAwait(false);
    }

    private static string RequireChannel(ClientRequest request, bool allowPattern)
    {
        if (request.Channel is null)
        {
            throw new RelayException(RelayError.BadRequest("missing field 'channel'"));
        }

        var valid = allowPattern
            ? ChannelName.IsValidPattern(request.Channel, out var error)
            : ChannelName.IsValidName(request.Channel, out error);
        return valid ? request.Channel : throw new RelayException(ErrorCodes.InvalidChannel, error);
    }

    private void Require(string channel, Operations operation)
    {
        if (!_principal.Capabilities.Allows(channel, operation))
        {
            throw new RelayException(RelayError.Forbidden(operation.ToString().ToLowerInvariant(), channel));
        }
    }

    private static T Expect<T>(RoutingReply reply) where T : RoutingReply => reply switch
    {
        T expected => expected,
        ErrorReply error => throw new RelayException(error.Error),
        _ => throw new InvalidOperationException($"unexpected routing reply {reply.GetType().Name}"),
    };

    private void Reply<TState>(byte[]? reference, string type, Action<Utf8JsonWriter, TState> fields, TState state)
    {
        using var frame = new FrameBuilder();
        ServerFrames.BeginReply(frame.Writer, type, reference);
        fields(frame.Writer, state);
        frame.Writer.WriteEndObject();
        Enqueue(frame.ToArray());
    }

    private void ReplyError(byte[]? reference, RelayError error)
    {
        using var frame = new FrameBuilder();
        ServerFrames.WriteError(frame.Writer, reference, error);
        Enqueue(frame.ToArray());
    }
}
