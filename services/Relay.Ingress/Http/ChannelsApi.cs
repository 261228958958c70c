using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Relay.Auth.Verification;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Channels;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Ingress.Limits;
using Relay.ServiceDefaults;

namespace Relay.Ingress.Http;

/// <summary>The channel HTTP API: publish, history and the list of active channels.</summary>
internal static class ChannelsApi
{
    private const int DefaultHistoryLimit = 100;
    private const int MaxHistoryLimit = 1000;

    public static void Map(IEndpointRouteBuilder endpoints)
    {
        var channels = endpoints.MapGroup("/v1/channels").AddEndpointFilter(RefusalLog.FilterAsync);
        channels.MapPost("/{channel}/messages", PublishAsync);
        channels.MapGet("/{channel}/messages", HistoryAsync);
        channels.MapGet("/{channel}/presence", PresenceAsync);
        channels.MapGet("/", ListAsync);
    }

    private static async Task<IResult> PublishAsync(HttpContext context, string channel, IRelayAuthenticator authenticator, IngressNode node)
    {
        var (principal, name, failure) = Authorize(context, authenticator, channel, Operations.Publish);
        if (failure is not null)
        {
            return failure;
        }

        // Token holders are clients; a namespace may keep publishing to servers holding a key.
        if (principal!.ExpiresAt is not null && !node.Namespaces.For(name!).ClientPublish)
        {
            return RelayResults.Error(ErrorCodes.Forbidden, $"clients may not publish in namespace '{ChannelName.NamespaceOf(name!)}'; publish from your server with a key");
        }

        // A declared length over the limit is refused before a byte of the body is read: reading it would throw Kestrel's
        // own limit (30 MB) as an unhandled exception, one error in the log per request. The connection closes after
        // such an answer: the rest of the body is not wanted, and a body that broke off leaves nothing to read after it.
        IResult RefuseBody(int code, string message)
        {
            context.Response.Headers.Connection = "close";
            return RelayResults.Error(code, message);
        }

        string TooLarge() => $"request body larger than {node.Options.MaxHttpBodyBytes} bytes";
        if (context.Request.ContentLength > node.Options.MaxHttpBodyBytes)
        {
            return RefuseBody(ErrorCodes.MessageTooLarge, TooLarge());
        }

        byte[]? body;
        try
        {
            body = await ReadBodyAsync(context.Request.BodyReader, node.Options.MaxHttpBodyBytes, context.RequestAborted).ConfigureAwait(false);
        }
        catch (BadHttpRequestException ex)
        {
            // The body broke off, came too slowly or broke HTTP's framing: the client's fault, answered as one.
            return ex.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? RefuseBody(ErrorCodes.MessageTooLarge, TooLarge())
                : RefuseBody(ErrorCodes.BadRequest, "unreadable request body: " + ex.Message);
        }

        if (body is null)
        {
            return RefuseBody(ErrorCodes.MessageTooLarge, TooLarge());
        }

        if (ParseItems(body, node.Options.MaxMessageBytes, out var items) is { } error)
        {
            return RelayResults.Error(error);
        }

        if (node.AppLimits.TryPublish(principal!.AppId, items.Count) is { } overAppRate)
        {
            return AppLimits.Refusal(context, overAppRate);
        }

        // A client's W3C traceparent header makes the message part of the client's trace.
        using var activity = RelayTracing.Start(RelayTracing.IngressReceive, ActivityKind.Server, context.Request.Headers.TraceParent.ToString() is { Length: > 0 } header ? header : null, name);
        var reply = await node.Bus.SendToRoutingAsync(new PublishRequest(principal!.AppId, name!, items, principal.ClientId, TraceParent: activity?.Id), context.RequestAborted).ConfigureAwait(false);
        if (reply is PublishReply)
        {
            node.Metrics.Published(items.Count);
        }

        return reply switch
        {
            PublishReply published => Json(StatusCodes.Status201Created, (name, published.Seqs), static (writer, state) =>
            {
                writer.WriteString("channel"u8, state.name);
                writer.WriteStartArray("seqs"u8);
                foreach (var seq in state.Seqs)
                {
                    writer.WriteNumberValue(seq);
                }

                writer.WriteEndArray();
            }),
            ErrorReply failed => RelayResults.Error(failed.Error),
            _ => RelayResults.Error(ErrorCodes.Internal, "unexpected reply from routing"),
        };
    }

    private static async Task<IResult> HistoryAsync(HttpContext context, string channel, IRelayAuthenticator authenticator, IngressNode node)
    {
        var (principal, name, failure) = Authorize(context, authenticator, channel, Operations.History);
        if (failure is not null)
        {
            return failure;
        }

        if (!TryQueryInteger(context, "limit", 1, MaxHistoryLimit, DefaultHistoryLimit, out var limit) ||
            !TryQueryInteger(context, "before", 1, long.MaxValue, long.MaxValue, out var before))
        {
            return RelayResults.Error(ErrorCodes.BadRequest, $"'limit' must be an integer from 1 to {MaxHistoryLimit} and 'before' a positive seq");
        }

        var pageBytes = node.Options.HistoryPageBytes;
        var reply = await node.Bus.SendToRoutingAsync(new HistoryRequest(principal!.AppId, name!, (int)limit, before, MaxBytes: pageBytes), context.RequestAborted).ConfigureAwait(false);
        return reply switch
        {
            HistoryReply history => Json(StatusCodes.Status200OK, (name, history, pageBytes), static (writer, state) =>
                ReplyBodies.WriteHistory(writer, state.name!, state.history, state.pageBytes)),
            ErrorReply failed => RelayResults.Error(failed.Error),
            _ => RelayResults.Error(ErrorCodes.Internal, "unexpected reply from routing"),
        };
    }

    private static async Task<IResult> PresenceAsync(HttpContext context, string channel, IRelayAuthenticator authenticator, IngressNode node)
    {
        var (principal, name, failure) = Authorize(context, authenticator, channel, Operations.None);
        if (failure is not null)
        {
            return failure;
        }

        if ((principal!.Capabilities.OperationsFor(name!) & (Operations.Presence | Operations.Subscribe)) == Operations.None)
        {
            return RelayResults.Error(RelayError.Forbidden("presence", name!));
        }

        var reply = await node.Bus.SendToRoutingAsync(new PresenceGetRequest(principal.AppId, name!), context.RequestAborted).ConfigureAwait(false);
        return reply switch
        {
            PresenceReply presence => Json(StatusCodes.Status200OK, (name, presence.Members), static (writer, state) =>
                ReplyBodies.WriteMembers(writer, state.name!, state.Members)),
            ErrorReply failed => RelayResults.Error(failed.Error),
            _ => RelayResults.Error(ErrorCodes.Internal, "unexpected reply from routing"),
        };
    }

    private static async Task<IResult> ListAsync(HttpContext context, IRelayAuthenticator authenticator, IngressNode node)
    {
        var auth = authenticator.Authenticate(context);
        if (!auth.Succeeded)
        {
            return RelayResults.Error(auth.Error);
        }

        var prefix = context.Request.Query["prefix"].ToString();
        var all = await node.Bus.QueryChannelsAsync(auth.Principal.AppId, prefix.Length == 0 ? null : prefix, context.RequestAborted).ConfigureAwait(false);
        var capabilities = auth.Principal.Capabilities;
        return Json(StatusCodes.Status200OK, (all, capabilities), static (writer, state) =>
        {
            writer.WriteStartArray("channels"u8);
            foreach (var channel in state.all)
            {
                // Only channels these credentials may do something with are listed.
                if (state.capabilities.OperationsFor(channel.Channel) != Operations.None)
                {
                    writer.WriteStartObject();
                    writer.WriteString("channel"u8, channel.Channel);
                    writer.WriteNumber("subscribers"u8, channel.Subscribers);
                    writer.WriteEndObject();
                }
            }

            writer.WriteEndArray();
        });
    }

    private static (RelayPrincipal? Principal, string? Channel, IResult? Failure) Authorize(HttpContext context, IRelayAuthenticator authenticator, string routeChannel, Operations operation)
    {
        var auth = authenticator.Authenticate(context);
        if (!auth.Succeeded)
        {
            return (null, null, RelayResults.Error(auth.Error));
        }

        // Routing decodes every escape but %2F, so a channel with levels arrives with %2F still in it.
        var channel = routeChannel.Replace("%2F", "/", StringComparison.OrdinalIgnoreCase);
        if (!ChannelName.IsValidName(channel, out var invalid))
        {
            return (null, null, RelayResults.Error(ErrorCodes.InvalidChannel, invalid));
        }

        return auth.Principal.Capabilities.Allows(channel, operation)
            ? (auth.Principal, channel, null)
            : (null, null, RelayResults.Error(RelayError.Forbidden(operation.ToString().ToLowerInvariant(), channel)));
    }

    private static RelayError? ParseItems(byte[] body, int maxMessageBytes, out List<PublishItem> items)
    {
        items = [];
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException ex)
        {
            return RelayError.BadRequest("malformed JSON: " + ex.Message);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Object)
            {
                return ParseItem(root, maxMessageBytes, items);
            }

            if (root.ValueKind != JsonValueKind.Array || root.GetArrayLength() == 0)
            {
                return RelayError.BadRequest("the body must be a message object {\"name\",\"data\",\"id\"} or a non-empty array of them");
            }

            if (root.GetArrayLength() > ClientFrameParser.MaxBatch)
            {
                return RelayError.BadRequest($"at most {ClientFrameParser.MaxBatch} messages per request");
            }

            foreach (var element in root.EnumerateArray())
            {
                if (ParseItem(element, maxMessageBytes, items) is { } error)
                {
                    return error;
                }
            }

            return null;
        }
    }

    private static RelayError? ParseItem(JsonElement element, int maxMessageBytes, List<PublishItem> items)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            return RelayError.BadRequest("each message must be a JSON object");
        }

        if (!element.TryGetProperty("data", out var data))
        {
            return RelayError.BadRequest("missing field 'data'");
        }

        string? name = null;
        if (element.TryGetProperty("name", out var nameElement))
        {
            if (nameElement.ValueKind != JsonValueKind.String)
            {
                return RelayError.BadRequest("field 'name' must be a string");
            }

            name = nameElement.GetString();
        }

        string? id = null;
        if (element.TryGetProperty("id", out var idElement))
        {
            if (idElement.ValueKind != JsonValueKind.String || idElement.GetString() is not { Length: > 0 and <= ClientFrameParser.MaxIdLength } idText)
            {
                return RelayError.BadRequest($"field 'id' must be a string of 1-{ClientFrameParser.MaxIdLength} characters");
            }

            id = idText;
        }

        var raw = CompactJson.Copy(JsonMarshal.GetRawUtf8Value(data));
        var size = raw.Length + (name?.Length ?? 0);
        if (size > maxMessageBytes)
        {
            return new RelayError(ErrorCodes.MessageTooLarge, $"message of {size} bytes is larger than maxMessageBytes ({maxMessageBytes})");
        }

        items.Add(new PublishItem(name, raw, DataIsJson: true, id));
        return null;
    }

    private static async Task<byte[]?> ReadBodyAsync(PipeReader reader, int limit, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (result.Buffer.Length > limit)
            {
                reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                return null;
            }

            if (result.IsCompleted)
            {
                var body = result.Buffer.ToArray();
                reader.AdvanceTo(result.Buffer.End);
                return body;
            }

            reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    private static bool TryQueryInteger(HttpContext context, string name, long min, long max, long fallback, out long value)
    {
        var text = context.Request.Query[name].ToString();
        if (text.Length == 0)
        {
            value = fallback;
            return true;
        }

        return long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out value) && value >= min && value <= max;
    }

    private static IResult Json<TState>(int status, TState state, Action<Utf8JsonWriter, TState> write) => new JsonObjectResult<TState>(status, state, write);

    private sealed class JsonObjectResult<TState>(int status, TState state, Action<Utf8JsonWriter, TState> write) : IResult
    {
        public async Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.StatusCode = status;
            httpContext.Response.ContentType = "application/json";
            var writer = new Utf8JsonWriter(httpContext.Response.BodyWriter, ServerFrames.WriterOptions);
            await using var disposeWriter = writer.ConfigureAwait(false);
            writer.WriteStartObject();
            write(writer, state);
            writer.WriteEndObject();
            await writer.FlushAsync(httpContext.RequestAborted).ConfigureAwait(false);
        }
    }
}
