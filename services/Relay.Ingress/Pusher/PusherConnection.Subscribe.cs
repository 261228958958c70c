using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Protocol;

namespace Relay.Ingress.Pusher;

/// <summary>
/// <c>pusher:subscribe</c> and <c>pusher:unsubscribe</c>: a public channel needs the key's <c>subscribe</c>; a private
/// one also a signature over <c>socket_id:channel</c>; a presence one <c>presence</c> too and a signature over
/// <c>socket_id:channel:channel_data</c>, whose <c>user_id</c> enters the channel's presence as a Relay client id with
/// <c>user_info</c> as its data. A cache channel replays its last event (Relay history's last message) after
/// <c>subscription_succeeded</c>, or sends <c>pusher:cache_miss</c>.
/// </summary>
internal sealed partial class PusherConnection
{
    private async ValueTask SubscribeAsync(JsonElement data)
    {
        var channel = StringOf(data, "channel");
        if (channel is null)
        {
            Enqueue(PusherFrames.Error(null, "pusher:subscribe needs data.channel"));
            return;
        }

        var relay = PusherChannels.ToRelay(channel, out var invalid);
        if (relay is null)
        {
            Enqueue(PusherFrames.SubscriptionError(channel, "InvalidChannel", $"invalid channel name: {invalid}", 400));
            return;
        }

        var kind = PusherChannels.KindOf(channel);
        var needs = kind == PusherChannelKind.Presence ? Operations.Subscribe | Operations.Presence : Operations.Subscribe;
        if ((_principal.Capabilities.OperationsFor(relay) & needs) != needs)
        {
            Enqueue(PusherFrames.SubscriptionError(channel, "AuthError", $"the app key may not subscribe to '{channel}'{(kind == PusherChannelKind.Presence ? " with presence" : string.Empty)}", 403));
            return;
        }

        string? userId = null;
        byte[]? userInfo = null;
        switch (kind)
        {
            case PusherChannelKind.Private or PusherChannelKind.Encrypted:
                if (!PusherSignatures.VerifyAuth(_broker.Keys, KeyName, StringOf(data, "auth"), SocketId + ":" + channel))
                {
                    Enqueue(PusherFrames.SubscriptionError(channel, "AuthError", "invalid signature: auth must be key:HMAC-SHA256(secret, socket_id:channel)", 401));
                    return;
                }

                break;
            case PusherChannelKind.Presence:
                var channelData = StringOf(data, "channel_data");
                if (channelData is null || !PusherSignatures.VerifyAuth(_broker.Keys, KeyName, StringOf(data, "auth"), SocketId + ":" + channel + ":" + channelData))
                {
                    Enqueue(PusherFrames.SubscriptionError(channel, "AuthError", "invalid signature: auth must be key:HMAC-SHA256(secret, socket_id:channel:channel_data)", 401));
                    return;
                }

                if (!TryReadMember(channelData, out userId, out userInfo, out var memberError))
                {
                    Enqueue(PusherFrames.SubscriptionError(channel, "InvalidChannelData", memberError, 400));
                    return;
                }

                break;
            case PusherChannelKind.User:
                if (_userId is null || channel != PusherChannels.UserPrefix + _userId)
                {
                    Enqueue(PusherFrames.SubscriptionError(channel, "AuthError", "a user channel is for the user signed in on this connection (pusher:signin first)", 401));
                    return;
                }

                break;
        }

        lock (_channels)
        {
            if (_channels.ContainsKey(channel))
            {
                // Subscribed already: told again, nothing doubles.
                Enqueue(PusherFrames.Event("pusher_internal:subscription_succeeded", channel, "{}"));
                return;
            }

            if (_channels.Count >= _node.Options.MaxSubscriptionsPerConnection)
            {
                Enqueue(PusherFrames.SubscriptionError(channel, "LimitReached", $"a connection may hold at most {_node.Options.MaxSubscriptionsPerConnection} subscriptions (Relay:Ingress:MaxSubscriptionsPerConnection)", 429));
                return;
            }
        }

        var sink = new PusherSubscriptionSink(this, channel, relay, kind) { UserId = userId };
        var cache = PusherChannels.IsCache(channel);
        var presence = kind == PusherChannelKind.Presence;
        try
        {
            sink.Subscription = await _node.StartSubscriptionAsync(sink, App, relay, null, null, cache ? 1 : null, (_, _, _) =>
            {
                if (!presence)
                {
                    Enqueue(PusherFrames.Event("pusher_internal:subscription_succeeded", channel, "{}"));
                }
            }).ConfigureAwait(false);
        }
        catch (RelayException ex)
        {
            Enqueue(PusherFrames.SubscriptionError(channel, ex.Error.Code == ErrorCodes.RateLimited ? "LimitReached" : "ServerError", ex.Error.Message, ex.Error.Code / 100));
            return;
        }

        bool kept;
        lock (_channels)
        {
            kept = Volatile.Read(ref _closing) == 0 && _channels.TryAdd(channel, sink);
        }

        if (!kept)
        {
            await _node.RemoveSubscriptionAsync(sink.Subscription).ConfigureAwait(false);
            return;
        }

        if (presence && !await EnterAsync(sink, userId!, userInfo!).ConfigureAwait(false))
        {
            return;
        }

        if (cache && !sink.Delivered)
        {
            Enqueue(PusherFrames.Event("pusher:cache_miss", channel, null));
            _broker.Webhooks.Post(App, new PusherWebhookEvent(PusherWebhookEvents.CacheMiss, channel));
        }
    }

    /// <summary>Enters the channel's presence, then sends <c>subscription_succeeded</c> with the members; refused, the subscription goes.</summary>
    private async ValueTask<bool> EnterAsync(PusherSubscriptionSink sink, string userId, byte[] userInfo)
    {
        var channel = sink.PusherName;
        string? failure = null;
        if (!_node.Namespaces.For(sink.RelayName).Presence)
        {
            failure = $"presence is off for the namespace of '{channel}'";
        }
        else if (userInfo.Length > _node.Options.MaxPresenceDataBytes)
        {
            failure = $"user_info of {userInfo.Length} bytes is larger than Relay:Ingress:MaxPresenceDataBytes ({_node.Options.MaxPresenceDataBytes})";
        }

        PresenceReply? members = null;
        if (failure is null)
        {
            var reply = await _node.Bus.SendToRoutingAsync(new PresenceRequest(App, sink.RelayName, "enter", userId, ConnectionId, userInfo, _node.NodeId), _node.Stopping).ConfigureAwait(false);
            if (reply is ErrorReply { Error: var error })
            {
                failure = error.Message;
            }
            else
            {
                var listed = await _node.Bus.SendToRoutingAsync(new PresenceGetRequest(App, sink.RelayName), _node.Stopping).ConfigureAwait(false);
                members = listed as PresenceReply;
                failure = members is null ? "presence members could not be read" : null;
            }
        }

        if (failure is not null)
        {
            lock (_channels)
            {
                _channels.Remove(channel);
            }

            await _node.RemoveSubscriptionAsync(sink.Subscription!).ConfigureAwait(false);
            await LeaveAsync(sink).ConfigureAwait(false);
            Enqueue(PusherFrames.SubscriptionError(channel, "LimitReached", failure, 403));
            return false;
        }

        Enqueue(PusherFrames.Event("pusher_internal:subscription_succeeded", channel, members!.Members, static (w, list) =>
        {
            // One member per user id (a user with several connections is one member), as Pusher counts them.
            var seen = new Dictionary<string, Relay.Core.Messages.RelayMessage>(StringComparer.Ordinal);
            foreach (var member in list)
            {
                if (member.ClientId is { } id)
                {
                    seen.TryAdd(id, member);
                }
            }

            w.WriteStartObject("presence"u8);
            w.WriteStartArray("ids"u8);
            foreach (var id in seen.Keys)
            {
                w.WriteStringValue(id);
            }

            w.WriteEndArray();
            w.WriteStartObject("hash"u8);
            foreach (var (id, member) in seen)
            {
                w.WritePropertyName(id);
                if (member.DataIsJson && member.Data.Length > 0)
                {
                    w.WriteRawValue(member.Data.Span, skipInputValidation: true);
                }
                else
                {
                    w.WriteNullValue();
                }
            }

            w.WriteEndObject();
            w.WriteNumber("count"u8, seen.Count);
            w.WriteEndObject();
        }));
        return true;
    }

    /// <summary>Reads <c>channel_data</c>: <c>{"user_id": string or number, "user_info": any JSON}</c>.</summary>
    private static bool TryReadMember(string channelData, out string? userId, out byte[]? userInfo, out string error)
    {
        userId = null;
        userInfo = null;
        using var document = PusherJson.TryParse(channelData);
        if (document is null)
        {
            error = "channel_data is not JSON";
            return false;
        }

        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("user_id"u8, out var id))
        {
            error = "channel_data must be a JSON object with user_id";
            return false;
        }

        userId = id.ValueKind switch
        {
            JsonValueKind.String => id.GetString(),
            JsonValueKind.Number => id.GetRawText(),
            _ => null,
        };
        if (string.IsNullOrEmpty(userId) || userId.Length > 128 || userId.Any(char.IsControl))
        {
            error = "user_id must be a string or number of 1-128 characters without control characters";
            return false;
        }

        userInfo = root.TryGetProperty("user_info"u8, out var info) ? Encoding.UTF8.GetBytes(info.GetRawText()) : "null"u8.ToArray();
        error = string.Empty;
        return true;
    }

    private async ValueTask UnsubscribeAsync(JsonElement data)
    {
        var channel = StringOf(data, "channel");
        if (channel is null)
        {
            Enqueue(PusherFrames.Error(null, "pusher:unsubscribe needs data.channel"));
            return;
        }

        PusherSubscriptionSink? sink;
        lock (_channels)
        {
            _channels.Remove(channel, out sink);
        }

        if (sink is null)
        {
            return;
        }

        await _node.RemoveSubscriptionAsync(sink.Subscription!).ConfigureAwait(false);
        await LeaveAsync(sink).ConfigureAwait(false);
    }

    /// <summary>Leaves the channel's presence if the subscription entered it; a leave the bus did not take is sent again by the node.</summary>
    private async ValueTask LeaveAsync(PusherSubscriptionSink sink)
    {
        if (sink.UserId is not { } userId)
        {
            return;
        }

        await SendLeaveAsync(new PresenceRequest(App, sink.RelayName, "leave", userId, ConnectionId, default, _node.NodeId)).ConfigureAwait(false);
    }

    /// <summary>Sends a presence leave; one the bus did not take is sent again by the node (<see cref="PresenceLeaves"/>).</summary>
    private async ValueTask SendLeaveAsync(PresenceRequest leave)
    {
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

    /// <summary>Drops every subscription the key's new capabilities no longer allow (Pusher has no message for it: they stop).</summary>
    private async Task DropForbiddenAsync()
    {
        var dropped = new List<PusherSubscriptionSink>();
        lock (_channels)
        {
            foreach (var sink in _channels.Values)
            {
                var needs = sink.Kind == PusherChannelKind.Presence ? Operations.Subscribe | Operations.Presence : Operations.Subscribe;
                if ((_principal.Capabilities.OperationsFor(sink.RelayName) & needs) != needs)
                {
                    dropped.Add(sink);
                }
            }

            foreach (var sink in dropped)
            {
                _channels.Remove(sink.PusherName);
            }
        }

        try
        {
            foreach (var sink in dropped)
            {
                await _node.RemoveSubscriptionAsync(sink.Subscription!).ConfigureAwait(false);
                await LeaveAsync(sink).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
        }
    }

    /// <summary>After the read loop: every subscription goes, presence is left, the user is signed out.</summary>
    private async Task CloseAsync()
    {
        Close(_closeCode, _closeReason);
        PusherSubscriptionSink[] all;
        lock (_channels)
        {
            all = [.. _channels.Values];
            _channels.Clear();
        }

        try
        {
            foreach (var sink in all)
            {
                await _node.RemoveSubscriptionAsync(sink.Subscription!).ConfigureAwait(false);
                await LeaveAsync(sink).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
        }
        finally
        {
            if (_userId is { } user)
            {
                _broker.SignedOut(App, user, this);
            }

            if (_userWatch is { Subscription: { } watched })
            {
                _userWatch = null;
                await _node.RemoveSubscriptionAsync(watched).ConfigureAwait(false);
            }

            await GoOfflineAsync().ConfigureAwait(false);
        }
    }
}
