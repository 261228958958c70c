using System.Text.Json;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Channels;
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
                    Authenticate(request);
                    break;
                case RequestType.Presence:
                    ReplyError(request.Ref, RelayError.BadRequest("presence is not available on this server yet"));
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
        var channel = RequireChannel(request, allowPattern: false);
        Require(channel, Operations.Publish);
        if (!request.HasData)
        {
            throw new RelayException(RelayError.BadRequest("missing field 'data'"));
        }

        var size = request.Data.Length + (request.Name?.Length ?? 0);
        if (size > _node.Options.MaxMessageBytes)
        {
            throw new RelayException(ErrorCodes.MessageTooLarge, $"message of {size} bytes is larger than maxMessageBytes ({_node.Options.MaxMessageBytes})");
        }

        var item = new PublishItem(request.Name, request.Data, DataIsJson: true, request.Id);
        var reply = await _node.Bus.SendToRoutingAsync(new PublishRequest(App, channel, [item], _principal.ClientId, TraceParent: null), _node.Stopping).ConfigureAwait(false);
        var published = Expect<PublishReply>(reply);
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
        var isPattern = ChannelName.IsPattern(channel);
        if (isPattern && (request.SinceEpoch is not null || request.Rewind is not null))
        {
            throw new RelayException(RelayError.BadRequest("pattern subscriptions get live messages only: 'since' and 'rewind' need a channel name"));
        }

        if (request.SinceEpoch is not null && request.Rewind is not null)
        {
            throw new RelayException(RelayError.BadRequest("use either 'since' or 'rewind', not both"));
        }

        if (_subscriptions.Remove(channel, out var previous))
        {
            await _node.RemoveSubscriptionAsync(previous).ConfigureAwait(false);
        }

        var subscription = new Subscription(this, App, channel, isPattern);
        _subscriptions[channel] = subscription;
        await _node.AddSubscriptionAsync(subscription).ConfigureAwait(false);
        if (isPattern)
        {
            Reply(request.Ref, "ok", static (writer, channel) => writer.WriteString("channel"u8, channel), channel);
            return;
        }

        RoutingRequest read = request switch
        {
            { SinceSeq: { } after } => new HistoryRequest(App, channel, int.MaxValue, AfterSeq: after),
            { Rewind: { } rewind } => new HistoryRequest(App, channel, Math.Min(rewind, MaxHistoryLimit)),
            _ => new PositionRequest(App, channel),
        };

        RoutingReply reply;
        try
        {
            reply = await _node.Bus.SendToRoutingAsync(read, _node.Stopping).ConfigureAwait(false);
            if (reply is ErrorReply error)
            {
                throw new RelayException(error.Error);
            }
        }
        catch
        {
            _subscriptions.Remove(channel);
            await _node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
            throw;
        }

        var (position, missed, recovered) = reply switch
        {
            HistoryReply history when request.SinceEpoch is not null =>
                history.Complete && history.Position.Epoch == request.SinceEpoch
                    ? (history.Position, history.Messages, true)
                    : (history.Position, (IReadOnlyList<RelayMessage>)[], false),
            HistoryReply history => (history.Position, history.Messages, false),
            PositionReply positionReply => (positionReply.Position, (IReadOnlyList<RelayMessage>)[], false),
            _ => throw new InvalidOperationException($"unexpected routing reply {reply.GetType().Name}"),
        };

        subscription.GoLive(position.Epoch, position.Seq, () =>
        {
            Reply(request.Ref, "ok", static (writer, state) =>
            {
                writer.WriteString("channel"u8, state.channel);
                writer.WriteString("epoch"u8, state.position.Epoch);
                writer.WriteNumber("seq"u8, state.position.Seq);
                writer.WriteBoolean("recovered"u8, state.recovered);
            }, (channel, position, recovered));
            foreach (var message in missed)
            {
                Send(message);
            }
        });
    }

    private async ValueTask UnsubscribeAsync(ClientRequest request)
    {
        var channel = RequireChannel(request, allowPattern: true);
        if (_subscriptions.Remove(channel, out var subscription))
        {
            await _node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
        }

        Reply(request.Ref, "ok", static (writer, channel) => writer.WriteString("channel"u8, channel), channel);
    }

    private async ValueTask HistoryAsync(ClientRequest request)
    {
        var channel = RequireChannel(request, allowPattern: false);
        Require(channel, Operations.History);
        var limit = request.Limit ?? DefaultHistoryLimit;
        if (limit > MaxHistoryLimit)
        {
            throw new RelayException(RelayError.BadRequest($"field 'limit' must be at most {MaxHistoryLimit}"));
        }

        var reply = await _node.Bus.SendToRoutingAsync(new HistoryRequest(App, channel, limit, request.Before), _node.Stopping).ConfigureAwait(false);
        var history = Expect<HistoryReply>(reply);
        Reply(request.Ref, "ok", static (writer, state) =>
        {
            writer.WriteString("channel"u8, state.channel);
            writer.WriteString("epoch"u8, state.history.Position.Epoch);
            writer.WriteStartArray("messages"u8);
            foreach (var message in state.history.Messages)
            {
                ServerFrames.WriteMessage(writer, message, asPush: false);
            }

            writer.WriteEndArray();
        }, (channel, history));
    }

    private void Authenticate(ClientRequest request)
    {
        if (string.IsNullOrEmpty(request.Token))
        {
            throw new RelayException(RelayError.BadRequest("missing field 'token'"));
        }

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

        _principal = result.Principal;
        Reply(request.Ref, "ok", static (writer, expiresAt) =>
        {
            if (expiresAt is { } at)
            {
                writer.WriteNumber("expiresAt"u8, at.ToUnixTimeMilliseconds());
            }
        }, result.Principal.ExpiresAt);
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
