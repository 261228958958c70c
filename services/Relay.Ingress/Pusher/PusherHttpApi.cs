using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Relay.Auth.Verification;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;

namespace Relay.Ingress.Pusher;

/// <summary>
/// Pusher's HTTP API at <c>/apps/{app_id}</c>, signed as Pusher signs it: <c>auth_key</c> (a Relay key's name),
/// <c>auth_timestamp</c> (within <c>Relay:Pusher:TimestampToleranceSeconds</c>), <c>auth_version=1.0</c>,
/// <c>body_md5</c> for a body, and <c>auth_signature</c> = hex HMAC-SHA256 with the key's secret over
/// <c>METHOD\nPATH\nsorted query</c> (checked by <see cref="PusherHttpAuth"/>). Refusals are plain text with Pusher's
/// status codes (401 signature, 403 not allowed, 400 bad request, 413 too large).
/// </summary>
internal static class PusherHttpApi
{
    /// <summary>The data of the terminate message: nothing to say beyond its name.</summary>
    private static readonly ReadOnlyMemory<byte> TerminateData = "{}"u8.ToArray();

    public static void Map(IEndpointRouteBuilder endpoints)
    {
        var apps = endpoints.MapGroup("/apps/{appId}");
        apps.MapPost("/events", EventsAsync);
        apps.MapPost("/batch_events", BatchEventsAsync);
        apps.MapGet("/channels", ChannelsAsync);
        apps.MapGet("/channels/{channel}", ChannelAsync);
        apps.MapGet("/channels/{channel}/users", UsersAsync);
        apps.MapPost("/users/{userId}/terminate_connections", TerminateAsync);
    }

    private static async Task<IResult> EventsAsync(HttpContext context, string appId, PusherBroker broker)
    {
        var (principal, body, failure) = await PusherHttpAuth.AuthorizeAsync(context, appId, broker).ConfigureAwait(false);
        if (failure is not null)
        {
            return failure;
        }

        PusherEvent? parsed;
        try
        {
            using var document = PusherJson.TryParse(body) ?? throw new JsonException("not JSON whose strings are text");
            parsed = ReadEvent(document.RootElement, broker.Options, allowMany: true, out var invalid);
            if (parsed is null)
            {
                return Text(StatusCodes.Status400BadRequest, invalid);
            }
        }
        catch (JsonException)
        {
            return Text(StatusCodes.Status400BadRequest, "the body must be a JSON object {name, data, channels or channel, socket_id, info}");
        }

        if (parsed.Size > broker.MaxEventBytes)
        {
            return Text(StatusCodes.Status413PayloadTooLarge, $"event data of {parsed.Size} bytes is larger than {broker.MaxEventBytes} (Relay:Pusher:MaxEventBytes)");
        }

        var error = await PublishAsync(broker, principal!, parsed, context.RequestAborted).ConfigureAwait(false);
        if (error is not null)
        {
            return error;
        }

        return parsed.Info.Length == 0 ? Json("{}") : Json(await InfoAsync(broker, principal!.AppId, parsed, context.RequestAborted).ConfigureAwait(false));
    }

    private static async Task<IResult> BatchEventsAsync(HttpContext context, string appId, PusherBroker broker)
    {
        var (principal, body, failure) = await PusherHttpAuth.AuthorizeAsync(context, appId, broker).ConfigureAwait(false);
        if (failure is not null)
        {
            return failure;
        }

        var events = new List<PusherEvent>();
        try
        {
            using var document = PusherJson.TryParse(body) ?? throw new JsonException("not JSON whose strings are text");
            if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("batch"u8, out var batch) || batch.ValueKind != JsonValueKind.Array)
            {
                return Text(StatusCodes.Status400BadRequest, "the body must be {\"batch\": [events]}");
            }

            if (batch.GetArrayLength() > broker.Options.MaxBatchEvents)
            {
                return Text(StatusCodes.Status400BadRequest, $"a batch holds at most {broker.Options.MaxBatchEvents} events (Relay:Pusher:MaxBatchEvents)");
            }

            foreach (var item in batch.EnumerateArray())
            {
                var parsed = ReadEvent(item, broker.Options, allowMany: false, out var invalid);
                if (parsed is null)
                {
                    return Text(StatusCodes.Status400BadRequest, invalid);
                }

                if (parsed.Size > broker.MaxEventBytes)
                {
                    return Text(StatusCodes.Status413PayloadTooLarge, $"event data of {parsed.Size} bytes is larger than {broker.MaxEventBytes} (Relay:Pusher:MaxEventBytes)");
                }

                events.Add(parsed);
            }
        }
        catch (JsonException)
        {
            return Text(StatusCodes.Status400BadRequest, "the body must be JSON: {\"batch\": [events]}");
        }

        // In order: two events of a batch on one channel keep their order.
        foreach (var item in events)
        {
            if (await PublishAsync(broker, principal!, item, context.RequestAborted).ConfigureAwait(false) is { } error)
            {
                return error;
            }
        }

        if (!events.Exists(static e => e.Info.Length > 0))
        {
            return Json("{}");
        }

        var parts = new List<string>(events.Count);
        foreach (var item in events)
        {
            var info = item.Info.Length == 0 ? "{}" : await InfoAsync(broker, principal!.AppId, item, context.RequestAborted).ConfigureAwait(false);
            using var document = JsonDocument.Parse(info);
            parts.Add(document.RootElement.TryGetProperty("channels"u8, out var channels) && channels.EnumerateObject().FirstOrDefault() is { Value.ValueKind: JsonValueKind.Object } first
                ? first.Value.GetRawText()
                : "{}");
        }

        return Json("{\"batch\":[" + string.Join(',', parts) + "]}");
    }

    private static async Task<IResult> ChannelsAsync(HttpContext context, string appId, PusherBroker broker)
    {
        var (principal, _, failure) = await PusherHttpAuth.AuthorizeAsync(context, appId, broker).ConfigureAwait(false);
        if (failure is not null)
        {
            return failure;
        }

        var prefix = context.Request.Query["filter_by_prefix"].ToString();
        var info = Attributes(context.Request.Query["info"].ToString());
        var userCount = info.Contains("user_count");
        if (userCount && !prefix.StartsWith(PusherChannels.PresencePrefix, StringComparison.Ordinal))
        {
            return Text(StatusCodes.Status400BadRequest, "info=user_count needs filter_by_prefix=presence- (user counts are for presence channels)");
        }

        var relayPrefix = prefix.StartsWith('#') ? prefix[1..] : prefix;
        var all = await broker.Node.Bus.QueryChannelsAsync(principal!.AppId, relayPrefix.Length == 0 ? null : relayPrefix, context.RequestAborted).ConfigureAwait(false);
        var listed = new List<(string Name, long Subscribers, int? Users)>();
        foreach (var channel in all)
        {
            // A user's own channel is not a channel of the app's, as on Pusher.
            if (channel.Subscribers <= 0 || principal.Capabilities.OperationsFor(channel.Channel) == Operations.None
                || channel.Channel.StartsWith(PusherChannels.RelayUserPrefix, StringComparison.Ordinal))
            {
                continue;
            }

            var users = userCount ? await UserCountAsync(broker, principal.AppId, channel.Channel, context.RequestAborted).ConfigureAwait(false) : (int?)null;
            listed.Add((PusherChannels.ToPusher(channel.Channel), channel.Subscribers, users));
        }

        return Json(PusherFrames.Json((listed, info), static (w, s) =>
        {
            w.WriteStartObject("channels"u8);
            foreach (var (name, subscribers, users) in s.listed)
            {
                w.WriteStartObject(name);
                if (users is { } count)
                {
                    w.WriteNumber("user_count"u8, count);
                }

                if (s.info.Contains("subscription_count"))
                {
                    w.WriteNumber("subscription_count"u8, subscribers);
                }

                w.WriteEndObject();
            }

            w.WriteEndObject();
        }));
    }

    private static async Task<IResult> ChannelAsync(HttpContext context, string appId, string channel, PusherBroker broker)
    {
        var (principal, _, failure) = await PusherHttpAuth.AuthorizeAsync(context, appId, broker).ConfigureAwait(false);
        if (failure is not null)
        {
            return failure;
        }

        if (PusherChannels.ToRelay(channel, out var invalid) is not { } relay)
        {
            return Text(StatusCodes.Status400BadRequest, $"invalid channel name: {invalid}");
        }

        if (principal!.Capabilities.OperationsFor(relay) == Operations.None)
        {
            return Text(StatusCodes.Status403Forbidden, $"the key may do nothing on '{channel}'");
        }

        var info = Attributes(context.Request.Query["info"].ToString());
        var presence = PusherChannels.KindOf(channel) == PusherChannelKind.Presence;
        if (info.Contains("user_count") && !presence)
        {
            return Text(StatusCodes.Status400BadRequest, "info=user_count is for presence channels");
        }

        var subscribers = await SubscriptionCountAsync(broker, principal.AppId, relay, context.RequestAborted).ConfigureAwait(false);
        var users = info.Contains("user_count") ? await UserCountAsync(broker, principal.AppId, relay, context.RequestAborted).ConfigureAwait(false) : (int?)null;
        return Json(PusherFrames.Json((subscribers, users, info), static (w, s) =>
        {
            w.WriteBoolean("occupied"u8, s.subscribers > 0);
            if (s.users is { } count)
            {
                w.WriteNumber("user_count"u8, count);
            }

            if (s.info.Contains("subscription_count"))
            {
                w.WriteNumber("subscription_count"u8, s.subscribers);
            }
        }));
    }

    private static async Task<IResult> UsersAsync(HttpContext context, string appId, string channel, PusherBroker broker)
    {
        var (principal, _, failure) = await PusherHttpAuth.AuthorizeAsync(context, appId, broker).ConfigureAwait(false);
        if (failure is not null)
        {
            return failure;
        }

        if (PusherChannels.KindOf(channel) != PusherChannelKind.Presence || PusherChannels.ToRelay(channel, out _) is not { } relay)
        {
            return Text(StatusCodes.Status400BadRequest, "users are listed for presence channels only");
        }

        if ((principal!.Capabilities.OperationsFor(relay) & (Operations.Presence | Operations.Subscribe)) == Operations.None)
        {
            return Text(StatusCodes.Status403Forbidden, $"the key may not read the presence of '{channel}'");
        }

        var ids = await UserIdsAsync(broker, principal.AppId, relay, context.RequestAborted).ConfigureAwait(false);
        return Json(PusherFrames.Json(ids, static (w, list) =>
        {
            w.WriteStartArray("users"u8);
            foreach (var id in list)
            {
                w.WriteStartObject();
                w.WriteString("id"u8, id);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }));
    }

    private static async Task<IResult> TerminateAsync(HttpContext context, string appId, string userId, PusherBroker broker)
    {
        var (principal, _, failure) = await PusherHttpAuth.AuthorizeAsync(context, appId, broker).ConfigureAwait(false);
        if (failure is not null)
        {
            return failure;
        }

        if (!principal!.Capabilities.Allows(PusherChannels.RelayUserPrefix + userId, Operations.Publish))
        {
            return Text(StatusCodes.Status403Forbidden, $"the key may not publish to user '{userId}' ('publish' on '{PusherChannels.RelayUserPrefix}{userId}')");
        }

        // This node's connections at once; every node's (this one's too) through the user's channel, which each
        // signed-in connection watches (PusherUserWatch).
        var channel = PusherChannels.RelayUserPrefix + userId;
        if (!Relay.Core.Channels.ChannelName.IsValidName(channel, out var invalid))
        {
            return Text(StatusCodes.Status400BadRequest, $"invalid user id: {invalid}");
        }

        broker.Terminate(principal.AppId, userId);
        var reply = await PublishOneAsync(broker.Node, new PublishRequest(principal.AppId, channel, [new PublishItem(PusherBroker.TerminateEvent, TerminateData, true, null)], principal.ClientId, null), context.RequestAborted).ConfigureAwait(false);
        if (reply is ErrorReply { Error: var error })
        {
            return Text(Math.Clamp(error.Code / 100, 400, 599), $"the user's connections on this node were closed; other nodes were not told: {error.Message}");
        }

        return Json("{}");
    }

    /// <summary>Publishes one event to each of its channels (at once; each channel's order is its own).</summary>
    private static async Task<IResult?> PublishAsync(PusherBroker broker, RelayPrincipal principal, PusherEvent item, CancellationToken cancellationToken)
    {
        foreach (var relay in item.RelayChannels)
        {
            if (!principal.Capabilities.Allows(relay, Operations.Publish))
            {
                return Text(StatusCodes.Status403Forbidden, $"the key may not publish on '{PusherChannels.ToPusher(relay)}'");
            }
        }

        var node = broker.Node;

        // One message per channel, each taken from the app's publish rate (Relay:Ingress:AppLimits), as Relay's HTTP API does.
        if (node.AppLimits.TryPublish(principal.AppId, item.RelayChannels.Count) is { } overAppRate)
        {
            return Text(StatusCodes.Status429TooManyRequests, overAppRate.Message);
        }

        var publishes = new Task<RoutingReply>[item.RelayChannels.Count];
        for (var i = 0; i < publishes.Length; i++)
        {
            var relay = item.RelayChannels[i];
            var id = item.SocketId is null ? null : PusherBroker.ExcludingId(item.SocketId);
            publishes[i] = PublishOneAsync(node, new PublishRequest(principal.AppId, relay, [new PublishItem(item.Name, item.Data, true, id)], principal.ClientId, null), cancellationToken);
        }

        var replies = await Task.WhenAll(publishes).ConfigureAwait(false);
        foreach (var reply in replies)
        {
            if (reply is ErrorReply { Error: var error })
            {
                return Text(Math.Clamp(error.Code / 100, 400, 599), error.Message);
            }

            if (reply is not PublishReply)
            {
                return Text(StatusCodes.Status500InternalServerError, "unexpected reply from routing");
            }
        }

        node.Metrics.Published(replies.Length);
        return null;
    }

    private static async Task<RoutingReply> PublishOneAsync(IngressNode node, PublishRequest request, CancellationToken cancellationToken)
    {
        using var activity = RelayTracing.Start(RelayTracing.IngressReceive, ActivityKind.Server, null, request.Channel);
        return await node.Bus.SendToRoutingAsync(request with { TraceParent = activity?.Id }, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<string> InfoAsync(PusherBroker broker, string app, PusherEvent item, CancellationToken cancellationToken)
    {
        var info = Attributes(item.Info);
        var rows = new List<(string Name, long Subscribers, int? Users)>();
        foreach (var relay in item.RelayChannels)
        {
            var subscribers = info.Contains("subscription_count") ? await SubscriptionCountAsync(broker, app, relay, cancellationToken).ConfigureAwait(false) : -1;
            var users = info.Contains("user_count") && PusherChannels.KindOf(relay) == PusherChannelKind.Presence ? await UserCountAsync(broker, app, relay, cancellationToken).ConfigureAwait(false) : (int?)null;
            rows.Add((PusherChannels.ToPusher(relay), subscribers, users));
        }

        return PusherFrames.Json(rows, static (w, list) =>
        {
            w.WriteStartObject("channels"u8);
            foreach (var (name, subscribers, users) in list)
            {
                w.WriteStartObject(name);
                if (subscribers >= 0)
                {
                    w.WriteNumber("subscription_count"u8, subscribers);
                }

                if (users is { } count)
                {
                    w.WriteNumber("user_count"u8, count);
                }

                w.WriteEndObject();
            }

            w.WriteEndObject();
        });
    }

    private static async Task<long> SubscriptionCountAsync(PusherBroker broker, string app, string relay, CancellationToken cancellationToken)
    {
        var counts = await broker.Node.Bus.QueryChannelsAsync(app, relay, cancellationToken).ConfigureAwait(false);
        foreach (var count in counts)
        {
            if (count.Channel == relay)
            {
                return count.Subscribers;
            }
        }

        return 0;
    }

    private static async Task<int> UserCountAsync(PusherBroker broker, string app, string relay, CancellationToken cancellationToken) =>
        (await UserIdsAsync(broker, app, relay, cancellationToken).ConfigureAwait(false)).Count;

    private static async Task<List<string>> UserIdsAsync(PusherBroker broker, string app, string relay, CancellationToken cancellationToken)
    {
        var reply = await broker.Node.Bus.SendToRoutingAsync(new PresenceGetRequest(app, relay), cancellationToken).ConfigureAwait(false);
        var ids = new List<string>();
        if (reply is PresenceReply { Members: var members })
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var member in members)
            {
                if (member.ClientId is { } id && seen.Add(id))
                {
                    ids.Add(id);
                }
            }
        }

        return ids;
    }

    private static HashSet<string> Attributes(string info) =>
        [.. info.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];

    /// <summary>An event of <c>events</c> or <c>batch_events</c>; null (with the reason) when it is not one.</summary>
    private static PusherEvent? ReadEvent(JsonElement root, PusherOptions options, bool allowMany, out string invalid)
    {
        invalid = string.Empty;
        if (root.ValueKind != JsonValueKind.Object)
        {
            invalid = "an event is a JSON object {name, data, channel(s), socket_id, info}";
            return null;
        }

        if (!root.TryGetProperty("name"u8, out var name) || name.ValueKind != JsonValueKind.String || name.GetString() is not { Length: > 0 and <= 200 } eventName)
        {
            invalid = "name must be a string of 1-200 characters";
            return null;
        }

        var names = new List<string>();
        if (root.TryGetProperty("channels"u8, out var channels) && allowMany)
        {
            if (channels.ValueKind != JsonValueKind.Array)
            {
                invalid = "channels must be an array of channel names";
                return null;
            }

            foreach (var channel in channels.EnumerateArray())
            {
                if (channel.ValueKind != JsonValueKind.String)
                {
                    invalid = "channels must be an array of channel names";
                    return null;
                }

                names.Add(channel.GetString()!);
            }
        }
        else if (root.TryGetProperty("channel"u8, out var single) && single.ValueKind == JsonValueKind.String)
        {
            names.Add(single.GetString()!);
        }

        if (names.Count == 0 || names.Count > options.MaxChannelsPerEvent)
        {
            invalid = $"an event names 1-{options.MaxChannelsPerEvent} channels (Relay:Pusher:MaxChannelsPerEvent)";
            return null;
        }

        var relays = new List<string>(names.Count);
        foreach (var channel in names)
        {
            if (PusherChannels.ToRelay(channel, out var reason) is not { } relay)
            {
                invalid = $"invalid channel name '{channel}': {reason}";
                return null;
            }

            if (!relays.Contains(relay))
            {
                relays.Add(relay);
            }
        }

        var hasData = root.TryGetProperty("data"u8, out var value);
        var data = hasData ? PusherData.FromElement(value) : PusherData.FromString(string.Empty);
        var size = hasData ? PusherData.SizeOf(value) : 0;
        string? socketId = null;
        if (root.TryGetProperty("socket_id"u8, out var socket) && socket.ValueKind != JsonValueKind.Null)
        {
            socketId = socket.ValueKind == JsonValueKind.String ? socket.GetString() : null;
            if (socketId is null || !IsSocketId(socketId))
            {
                invalid = "socket_id must be a socket id (digits.digits)";
                return null;
            }
        }

        var info = root.TryGetProperty("info"u8, out var infoValue) && infoValue.ValueKind == JsonValueKind.String ? infoValue.GetString()! : string.Empty;
        return new PusherEvent(eventName, data, size, relays, socketId, info);
    }

    private static bool IsSocketId(string value)
    {
        var dot = value.IndexOf('.', StringComparison.Ordinal);
        return dot > 0 && dot < value.Length - 1 && value.Length <= 40
            && value.AsSpan(0, dot).IndexOfAnyExceptInRange('0', '9') < 0 && value.AsSpan(dot + 1).IndexOfAnyExceptInRange('0', '9') < 0;
    }

    internal static IResult Text(int status, string message) => Results.Text(message, "text/plain; charset=utf-8", Encoding.UTF8, status);

    private static IResult Json(string json) => Results.Text(json, "application/json", Encoding.UTF8, StatusCodes.Status200OK);

    private sealed record PusherEvent(string Name, byte[] Data, int Size, List<string> RelayChannels, string? SocketId, string Info);
}
