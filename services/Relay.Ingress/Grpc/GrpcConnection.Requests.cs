using System.Diagnostics;
using Relay.Auth.Verification;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Channels;
using Relay.Core.Diagnostics;
using Relay.Core.Protocol;
using Relay.Grpc.V1;
using Relay.Ingress.Subscriptions;
using HistoryRequest = Relay.Grpc.V1.HistoryRequest;
using PresenceRequest = Relay.Grpc.V1.PresenceRequest;
using PublishRequest = Relay.Grpc.V1.PublishRequest;

namespace Relay.Ingress.Grpc;

/// <summary>
/// A Connect stream's requests, each checked and answered as the WebSocket's same request is (the same capabilities,
/// namespace rules, limits and error codes); a bad frame gets an error frame and the stream stays open.
/// </summary>
internal sealed partial class GrpcConnection
{
    private async ValueTask HandleAsync(ClientFrame frame)
    {
        var reference = frame.Ref;
        try
        {
            switch (frame.RequestCase)
            {
                case ClientFrame.RequestOneofCase.Ping:
                    Reply(reference, new ServerFrame { Pong = new Pong() });
                    break;
                case ClientFrame.RequestOneofCase.Publish:
                    await PublishAsync(reference, frame.Publish).ConfigureAwait(false);
                    break;
                case ClientFrame.RequestOneofCase.Subscribe:
                    await SubscribeAsync(reference, frame.Subscribe).ConfigureAwait(false);
                    break;
                case ClientFrame.RequestOneofCase.Unsubscribe:
                    await UnsubscribeAsync(reference, frame.Unsubscribe).ConfigureAwait(false);
                    break;
                case ClientFrame.RequestOneofCase.History:
                    await HistoryAsync(reference, frame.History).ConfigureAwait(false);
                    break;
                case ClientFrame.RequestOneofCase.Presence:
                    await PresenceAsync(reference, frame.Presence).ConfigureAwait(false);
                    break;
                case ClientFrame.RequestOneofCase.Auth:
                    await AuthenticateAsync(reference, frame.Auth).ConfigureAwait(false);
                    break;
                default:
                    ReplyError(reference, RelayError.BadRequest("the frame carries no request: set one of subscribe, unsubscribe, publish, presence, history, auth or ping"));
                    break;
            }
        }
        catch (RelayException ex)
        {
            ReplyError(reference, ex.Error);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
            ReplyError(reference, new RelayError(ErrorCodes.Internal, "internal error; the request was not completed"));
        }
    }

    private async ValueTask PublishAsync(string reference, PublishRequest request)
    {
        var channel = RequireChannel(request.Channel, allowPattern: false);
        Require(channel, Operations.Publish);
        if (request.Messages.Count != 1)
        {
            throw new RelayException(RelayError.BadRequest($"a publish on a Connect stream carries exactly one message (it had {request.Messages.Count}); batch with the unary Publish"));
        }

        if (!_publishRate.TryTake(_node.Time.GetTimestamp(), _node.Time.TimestampFrequency))
        {
            throw new RelayException(ErrorCodes.RateLimited, $"publish rate above {_node.Options.PublishRatePerSecond} per second on this connection; slow down or batch with the unary Publish");
        }

        if (!_node.Namespaces.For(channel).ClientPublish)
        {
            throw new RelayException(ErrorCodes.Forbidden, $"clients may not publish in namespace '{ChannelName.NamespaceOf(channel)}'; publish from your server with a key (unary Publish)");
        }

        var message = request.Messages[0];
        var item = GrpcService.ToItem(message, _node.Options.MaxMessageBytes);
        if (_node.AppLimits.TryPublish(App) is { } overAppRate)
        {
            throw new RelayException(overAppRate);
        }

        using var activity = RelayTracing.Start(RelayTracing.IngressReceive, ActivityKind.Consumer, null, channel);
        var reply = await _node.Bus.SendToRoutingAsync(new Bus.Routing.PublishRequest(App, channel, [item], _principal.ClientId, activity?.Id), _node.Stopping).ConfigureAwait(false);
        var published = Expect<PublishReply>(reply);
        _node.Metrics.Published(1);
        Reply(reference, new ServerFrame { Published = new PublishResult { Channel = channel, Seqs = { published.Seqs[0] } } });
    }

    private async ValueTask SubscribeAsync(string reference, SubscribeRequest request)
    {
        var channel = RequireChannel(request.Channel, allowPattern: true);
        Require(channel, Operations.Subscribe);
        TakeRead();
        var since = request.Since;
        int? rewind = request.HasRewind ? request.Rewind : null;
        if (ChannelName.IsPattern(channel) && (since is not null || rewind is not null))
        {
            throw new RelayException(RelayError.BadRequest("pattern subscriptions get live messages only: 'since' and 'rewind' need a channel name"));
        }

        if (since is not null && rewind is not null)
        {
            throw new RelayException(RelayError.BadRequest("use either 'since' or 'rewind', not both"));
        }

        if (rewind is < 1)
        {
            throw new RelayException(RelayError.BadRequest("field 'rewind' must be at least 1"));
        }

        if (rewind is not null)
        {
            // 'since' recovers what this subscription missed; 'rewind' reads history the client never subscribed for.
            Require(channel, Operations.History);
        }

        Subscription? previous;
        lock (this)
        {
            _subscriptions.Remove(channel, out previous);
            if (previous is null && _subscriptions.Count >= _node.Options.MaxSubscriptionsPerConnection)
            {
                throw new RelayException(ErrorCodes.RateLimited, $"a connection may hold at most {_node.Options.MaxSubscriptionsPerConnection} subscriptions; unsubscribe first or use a pattern");
            }
        }

        if (previous is not null)
        {
            await _node.RemoveSubscriptionAsync(previous).ConfigureAwait(false);
        }

        var subscription = await _node.StartSubscriptionAsync(this, App, channel, since?.Epoch, since?.Seq, rewind, (channel, position, recovered) =>
        {
            var result = new SubscribeResult { Channel = channel };
            if (position is { } at)
            {
                result.Epoch = at.Epoch;
                result.Seq = at.Seq;
                result.Recovered = recovered;
            }

            Reply(reference, new ServerFrame { Subscribed = result });
        }).ConfigureAwait(false);

        bool kept;
        lock (this)
        {
            // The capabilities may have changed while it was set up, or the stream closed: then it is not kept.
            kept = Volatile.Read(ref _closing) == 0 && _principal.Capabilities.Allows(channel, Operations.Subscribe) && _subscriptions.TryAdd(channel, subscription);
        }

        if (!kept)
        {
            await _node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
            if (Volatile.Read(ref _closing) == 0)
            {
                ReplyDropped("subscribe", channel);
            }
        }
    }

    private async ValueTask UnsubscribeAsync(string reference, UnsubscribeRequest request)
    {
        var channel = RequireChannel(request.Channel, allowPattern: true);
        Subscription? removed;
        lock (this)
        {
            _subscriptions.Remove(channel, out removed);
        }

        if (removed is not null)
        {
            await _node.RemoveSubscriptionAsync(removed).ConfigureAwait(false);
        }

        Reply(reference, new ServerFrame { Unsubscribed = new UnsubscribeResult { Channel = channel } });
    }

    private async ValueTask HistoryAsync(string reference, HistoryRequest request)
    {
        var channel = RequireChannel(request.Channel, allowPattern: false);
        Require(channel, Operations.History);
        TakeRead();
        var limit = GrpcFrames.HistoryLimit(request);
        var pageBytes = _node.Options.HistoryPageBytes;
        var reply = await _node.Bus.SendToRoutingAsync(new Bus.Routing.HistoryRequest(App, channel, limit, request.HasBefore ? request.Before : null, MaxBytes: pageBytes), _node.Stopping).ConfigureAwait(false);
        Reply(reference, new ServerFrame { History = GrpcFrames.ToHistory(channel, Expect<HistoryReply>(reply), pageBytes) });
    }

    private async ValueTask PresenceAsync(string reference, PresenceRequest request)
    {
        var channel = RequireChannel(request.Channel, allowPattern: false);
        var action = request.Action;
        if (action == "get")
        {
            if ((_principal.Capabilities.OperationsFor(channel) & (Operations.Presence | Operations.Subscribe)) == Operations.None)
            {
                throw new RelayException(RelayError.Forbidden("presence", channel));
            }

            TakeRead();
            var members = Expect<PresenceReply>(await _node.Bus.SendToRoutingAsync(new PresenceGetRequest(App, channel), _node.Stopping).ConfigureAwait(false));
            Reply(reference, new ServerFrame { Presence = GrpcFrames.ToMembers(channel, members.Members) });
            return;
        }

        if (action is not ("enter" or "update" or "leave"))
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
            throw new RelayException(RelayError.BadRequest("presence needs a clientId: connect with the relay-client-id header (key) or a token with 'sub'"));
        }

        ReadOnlyMemory<byte> data = default;
        if (request.Data is { KindCase: not Data.KindOneofCase.None })
        {
            var (bytes, isJson) = GrpcFrames.FromData(request.Data, "data");
            data = isJson ? bytes : throw new RelayException(RelayError.BadRequest("presence data must be JSON (data.json)"));
        }

        CheckPresenceChange(channel, action, data.Length);
        var leaving = action == "leave";
        var changed = TrackPresence(channel, present: !leaving);
        var reply = await _node.Bus.SendToRoutingAsync(new Bus.Routing.PresenceRequest(App, channel, action, clientId, ConnectionId, data, _node.NodeId), _node.Stopping).ConfigureAwait(false);
        if (changed && reply is ErrorReply { Error.Code: var code })
        {
            // As the WebSocket's: refused, nothing was stored; not known to be applied, the close leaves again.
            var unsure = code is ErrorCodes.Unavailable or ErrorCodes.Internal;
            if (leaving == unsure)
            {
                TrackPresence(channel, present: leaving);
            }
        }

        Expect<PresenceReply>(reply);
        Reply(reference, new ServerFrame { Presence = new PresenceResult { Channel = channel } });
    }

    private async ValueTask AuthenticateAsync(string reference, AuthRequest request)
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

        lock (this)
        {
            _principal = result.Principal;
            Volatile.Write(ref _keysVersion, keysVersion);
        }

        Reply(reference, new ServerFrame { Auth = new Relay.Grpc.V1.AuthResult { ExpiresAt = result.Principal.ExpiresAt?.ToUnixTimeMilliseconds() ?? 0 } });
        await DropForbiddenAsync().ConfigureAwait(false);
    }

    private static string RequireChannel(string channel, bool allowPattern)
    {
        if (string.IsNullOrEmpty(channel))
        {
            throw new RelayException(RelayError.BadRequest("missing field 'channel'"));
        }

        var valid = allowPattern ? ChannelName.IsValidPattern(channel, out var error) : ChannelName.IsValidName(channel, out error);
        return valid ? channel : throw new RelayException(ErrorCodes.InvalidChannel, error);
    }

    private void Require(string channel, Operations operation)
    {
        if (!_principal.Capabilities.Allows(channel, operation))
        {
            throw new RelayException(RelayError.Forbidden(operation.ToString().ToLowerInvariant(), channel));
        }
    }

    private void TakeRead()
    {
        if (!_readRate.TryTake(_node.Time.GetTimestamp(), _node.Time.TimestampFrequency))
        {
            throw new RelayException(ErrorCodes.RateLimited, $"subscribe, history and presence get above {_node.Options.ReadRatePerSecond} per second on this connection; slow down");
        }
    }

    private void CheckPresenceChange(string channel, string action, int dataBytes)
    {
        var maxData = Math.Min(_node.Options.MaxPresenceDataBytes, _node.Options.MaxMessageBytes);
        if (dataBytes > maxData)
        {
            throw new RelayException(ErrorCodes.MessageTooLarge, $"presence data of {dataBytes} bytes is larger than {maxData} (Relay:Ingress:MaxPresenceDataBytes)");
        }

        lock (this)
        {
            if (action != "leave" && _presence is { } entered && entered.Count >= _node.Options.MaxPresencePerConnection && !entered.Contains(channel))
            {
                throw new RelayException(ErrorCodes.RateLimited, $"a connection may be present in at most {_node.Options.MaxPresencePerConnection} channels; leave one first");
            }
        }

        if (!_publishRate.TryTake(_node.Time.GetTimestamp(), _node.Time.TimestampFrequency))
        {
            throw new RelayException(ErrorCodes.RateLimited, $"publishes and presence changes above {_node.Options.PublishRatePerSecond} per second on this connection; slow down");
        }
    }

    internal static T Expect<T>(RoutingReply reply) where T : RoutingReply => reply switch
    {
        T expected => expected,
        ErrorReply error => throw new RelayException(error.Error),
        _ => throw new InvalidOperationException($"unexpected routing reply {reply.GetType().Name}"),
    };
}
