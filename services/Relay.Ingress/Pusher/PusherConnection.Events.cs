using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;

namespace Relay.Ingress.Pusher;

/// <summary>
/// Client events (<c>client-*</c>) and user sign-in. A client event goes on a private or presence channel the connection
/// is subscribed to, when the key may publish there and the namespace lets clients publish; it is one Relay message
/// (name = the event, data kept exact), which every other subscriber gets, on every protocol, and the sender does not.
/// </summary>
internal sealed partial class PusherConnection
{
    private async ValueTask ClientEventAsync(string eventName, string? channel, JsonElement data)
    {
        PusherSubscriptionSink? sink = null;
        if (channel is not null)
        {
            lock (_channels)
            {
                _channels.TryGetValue(channel, out sink);
            }
        }

        string? refusal = null;
        var code = (int?)null;
        if (sink is null)
        {
            refusal = $"client event '{eventName}' on a channel this connection is not subscribed to";
        }
        else if (sink.Kind is not (PusherChannelKind.Private or PusherChannelKind.Presence))
        {
            refusal = "client events are only supported on private and presence channels (not public or encrypted ones)";
        }
        else if (eventName.Length > 200)
        {
            (code, refusal) = (ClientEventRejected, "event names are at most 200 characters");
        }
        else if (!_principal.Capabilities.Allows(sink.RelayName, Operations.Publish))
        {
            (code, refusal) = (Unauthorized, $"the app key may not publish on '{channel}': client events need its 'publish' capability");
        }
        else if (!_node.Namespaces.For(sink.RelayName).ClientPublish)
        {
            (code, refusal) = (Unauthorized, $"clients may not publish in the namespace of '{channel}'");
        }

        if (refusal is null && PusherData.SizeOf(data) is var size && size > _broker.MaxEventBytes)
        {
            (code, refusal) = (ClientEventRejected, $"event data of {size} bytes is larger than {_broker.MaxEventBytes} (Relay:Pusher:MaxEventBytes)");
        }

        if (refusal is null && !_clientEvents.TryTake(_node.Time.GetTimestamp(), _node.Time.TimestampFrequency))
        {
            (code, refusal) = (ClientEventRejected, $"client event rate above {_options.ClientEventsPerSecond} per second (Relay:Pusher:ClientEventsPerSecond)");
        }

        if (refusal is null && _node.AppLimits.TryPublish(App) is { } overAppRate)
        {
            (code, refusal) = (ClientEventRejected, overAppRate.Message);
        }

        if (refusal is not null)
        {
            LogClientEventRefused(_logger, ConnectionId, eventName, refusal);
            Enqueue(PusherFrames.Error(code, refusal, channel));
            return;
        }

        var item = new PublishItem(eventName, PusherData.FromElement(data), true, PusherBroker.ExcludingId(SocketId));
        using var activity = RelayTracing.Start(RelayTracing.IngressReceive, ActivityKind.Consumer, null, sink!.RelayName);
        var reply = await _node.Bus.SendToRoutingAsync(new PublishRequest(App, sink.RelayName, [item], sink.UserId, activity?.Id), _node.Stopping).ConfigureAwait(false);
        if (reply is PublishReply)
        {
            _node.Metrics.Published(1);
            if (_broker.Webhooks.Wants(App, PusherWebhookEvents.ClientEvent))
            {
                var text = data.ValueKind switch
                {
                    JsonValueKind.Undefined => string.Empty,
                    JsonValueKind.String => data.GetString()!,
                    _ => data.GetRawText(),
                };
                _broker.Webhooks.Post(App, new PusherWebhookEvent(PusherWebhookEvents.ClientEvent, channel!, sink.Kind == PusherChannelKind.Presence ? sink.UserId : null, eventName, text, SocketId));
            }

            return;
        }

        var error = reply is ErrorReply { Error: var e } ? e.Message : "unexpected reply from routing";
        Enqueue(PusherFrames.Error(null, $"client event not published: {error}", channel));
    }

    /// <summary>
    /// <c>pusher:signin</c>: <c>auth</c> is <c>key:HMAC-SHA256(secret, socket_id::user::user_data)</c> and <c>user_data</c>
    /// a JSON object with an <c>id</c>; answered with <c>pusher:signin_success</c>. The user may then subscribe to its
    /// <c>#server-to-user-{id}</c> channel, and <c>terminate_connections</c> reaches the connection.
    /// </summary>
    private async ValueTask SignInAsync(JsonElement data)
    {
        var userData = StringOf(data, "user_data");
        if (userData is null || !PusherSignatures.VerifyAuth(_broker.Keys, KeyName, StringOf(data, "auth"), SocketId + "::user::" + userData))
        {
            Enqueue(PusherFrames.Error(Unauthorized, "sign-in refused: auth must be key:HMAC-SHA256(secret, socket_id::user::user_data)"));
            return;
        }

        string? id = null;
        List<string> watched = [];
        using (var document = PusherJson.TryParse(userData))
        {
            if (document?.RootElement is { ValueKind: JsonValueKind.Object } root && root.TryGetProperty("id"u8, out var value))
            {
                id = value.ValueKind == JsonValueKind.String ? value.GetString() : value.ValueKind == JsonValueKind.Number ? value.GetRawText() : null;
            }

            if (document is not null)
            {
                watched = PusherWatchlist.UsersOf(document.RootElement);
            }
        }

        if (string.IsNullOrEmpty(id) || id.Length > 128 || !Relay.Core.Channels.ChannelName.IsValidName(PusherChannels.RelayUserPrefix + id, out _))
        {
            Enqueue(PusherFrames.Error(Unauthorized, "sign-in refused: user_data must be a JSON object with an id (1-128 characters a channel name may hold)"));
            return;
        }

        if (_userId is { } previous && previous != id)
        {
            _broker.SignedOut(App, previous, this);
        }

        _userId = id;
        _broker.SignedIn(App, id, this);
        await WatchUserAsync(id).ConfigureAwait(false);
        var watchlists = _broker.App(App)?.Watchlists == true;
        if (watchlists)
        {
            await GoOnlineAsync(id).ConfigureAwait(false);
        }

        Enqueue(PusherFrames.Event("pusher:signin_success", null, userData, static (w, u) => w.WriteString("user_data"u8, u)));
        if (watchlists && watched.Count > 0)
        {
            await WatchAsync(id, watched).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// With watchlist events on: the connection enters its user's presence, so watchers anywhere see the user online while
    /// it is connected; a previous sign-in's presence and watchlist are left first.
    /// </summary>
    private async ValueTask GoOnlineAsync(string user)
    {
        await GoOfflineAsync().ConfigureAwait(false);
        try
        {
            var reply = await _node.Bus.SendToRoutingAsync(new PresenceRequest(App, PusherChannels.RelayUserPrefix + user, "enter", user, ConnectionId, "{}"u8.ToArray(), _node.NodeId), _node.Stopping).ConfigureAwait(false);
            if (reply is ErrorReply { Error: var error })
            {
                LogOnlineFailed(_logger, ConnectionId, user, error.Message);
            }
            else
            {
                _onlineAs = user;
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            // Signed in all the same: watchers do not see this connection.
            LogOnlineFailed(_logger, ConnectionId, user, ex.Message);
        }
    }

    /// <summary>Watches the signed-in user's watchlist; it stays quiet (logged) if the watches cannot be made.</summary>
    private async ValueTask WatchAsync(string user, List<string> watched)
    {
        try
        {
            _watchlist = await PusherWatchlist.StartAsync(_node, App, watched, Enqueue).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            LogOnlineFailed(_logger, ConnectionId, user, ex.Message);
        }
    }

    /// <summary>Leaves the user's presence (a leave the bus did not take is sent again by the node) and ends the watchlist.</summary>
    private async ValueTask GoOfflineAsync()
    {
        if (Interlocked.Exchange(ref _watchlist, null) is { } watchlist)
        {
            await watchlist.StopAsync(_node).ConfigureAwait(false);
        }

        if (Interlocked.Exchange(ref _onlineAs, null) is not { } user)
        {
            return;
        }

        await SendLeaveAsync(new PresenceRequest(App, PusherChannels.RelayUserPrefix + user, "leave", user, ConnectionId, default, _node.NodeId)).ConfigureAwait(false);
    }

    /// <summary>
    /// Subscribes the connection to its user's Relay channel before <c>signin_success</c>, so that a
    /// <c>terminate_connections</c> taken by any node after it reaches this connection.
    /// </summary>
    private async ValueTask WatchUserAsync(string user)
    {
        if (_userWatch is { } previous)
        {
            if (previous.User == user)
            {
                return;
            }

            _userWatch = null;
            await _node.RemoveSubscriptionAsync(previous.Subscription!).ConfigureAwait(false);
        }

        var watch = new PusherUserWatch(this, user);
        try
        {
            watch.Subscription = await _node.StartSubscriptionAsync(watch, App, PusherChannels.RelayUserPrefix + user, null, null, null, static (_, _, _) => { }).ConfigureAwait(false);
            _userWatch = watch;
        }
        catch (Relay.Core.Protocol.RelayException ex)
        {
            // Signed in all the same: terminate_connections then reaches this connection only from this node.
            LogUserWatchFailed(_logger, ConnectionId, user, ex.Error.Message);
        }
    }

    [LoggerMessage(EventId = 1512, Level = LogLevel.Warning, Message = "Pusher connection {ConnectionId}: user {User}'s watchlist presence or watches could not be made ({Reason}); watchlist events miss this connection")]
    private static partial void LogOnlineFailed(ILogger logger, string connectionId, string user, string reason);

    [LoggerMessage(EventId = 1511, Level = LogLevel.Warning, Message = "Pusher connection {ConnectionId}: user {User}'s channel could not be watched ({Reason}); terminate_connections reaches it only from this node")]
    private static partial void LogUserWatchFailed(ILogger logger, string connectionId, string user, string reason);

    [LoggerMessage(EventId = 1510, Level = LogLevel.Debug, Message = "Pusher connection {ConnectionId}: client event '{Event}' refused: {Reason}")]
    private static partial void LogClientEventRefused(ILogger logger, string connectionId, string @event, string reason);
}
