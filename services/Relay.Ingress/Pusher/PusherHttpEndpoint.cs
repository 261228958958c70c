using System.Buffers;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Relay.Ingress.Connections;

namespace Relay.Ingress.Pusher;

/// <summary>
/// pusher-js's HTTP fallbacks (<c>xhr_streaming</c>, <c>xhr_polling</c>) at <c>/pusher/app/{key}/{server}/{session}/…</c>
/// (pusher-js's default <c>httpPath</c>; <c>server</c> and <c>session</c> are chosen by the client): <c>POST
/// xhr_streaming</c> and <c>POST xhr</c> open the session (the same checks and counts as the WebSocket's upgrade) and
/// read its frames, <c>POST xhr_send</c> posts the client's (a JSON array of strings, each one Pusher frame). Each
/// session is a <see cref="PusherConnection"/> like a WebSocket's, carried by a <see cref="PusherHttpSession"/>. Any
/// origin may call them, as Pusher's own (CORS without credentials).
/// </summary>
internal static class PusherHttpEndpoint
{
    public const string Path = "/pusher/app/{key}/{server}/{session}";

    public static void Map(IEndpointRouteBuilder endpoints)
    {
        var sessions = endpoints.MapGroup(Path);
        sessions.MapPost("/xhr_streaming", static (HttpContext context, string key, string server, string session, PusherBroker broker, PusherHttpSessions all) =>
            ReceiveAsync(context, key, server, session, broker, all, streaming: true));
        sessions.MapPost("/xhr", static (HttpContext context, string key, string server, string session, PusherBroker broker, PusherHttpSessions all) =>
            ReceiveAsync(context, key, server, session, broker, all, streaming: false));
        sessions.MapPost("/xhr_send", SendAsync);
        sessions.MapMethods("/{transport}", [HttpMethods.Options], static (HttpContext context) =>
        {
            AllowOrigin(context.Response);
            context.Response.Headers.AccessControlAllowMethods = "OPTIONS, POST";
            context.Response.Headers.AccessControlAllowHeaders = "Content-Type";
            context.Response.Headers.AccessControlMaxAge = "86400";
            return Results.NoContent();
        });
    }

    private static void AllowOrigin(HttpResponse response) => response.Headers.AccessControlAllowOrigin = "*";

    /// <summary>Session path segments as pusher-js makes them (digits, base-32 letters); anything else is no session of ours.</summary>
    private static bool IsSegment(string value)
    {
        if (value.Length is 0 or > 64)
        {
            return false;
        }

        foreach (var c in value)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('-' or '_'))
            {
                return false;
            }
        }

        return true;
    }

    private static async Task ReceiveAsync(HttpContext context, string key, string server, string session, PusherBroker broker, PusherHttpSessions all, bool streaming)
    {
        var response = context.Response;
        AllowOrigin(response);
        if (!IsSegment(server) || !IsSegment(session))
        {
            await PusherHttpApi.Text(StatusCodes.Status404NotFound, "no such session: a session path is /pusher/app/{key}/{server}/{session}/xhr_streaming with letters, digits, '-' or '_' (at most 64 each)").ExecuteAsync(context).ConfigureAwait(false);
            return;
        }

        response.ContentType = "application/javascript; charset=UTF-8";
        response.Headers.CacheControl = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
        // Each batch is flushed as written; a proxy must not hold it either.
        response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        // Headers first: Kestrel hands out no buffer for the body before it knows how the body is framed.
        await response.StartAsync(context.RequestAborted).ConfigureAwait(false);

        var id = key + "/" + server + "/" + session;
        if (all.Find(id) is { } existing)
        {
            await existing.ServeAsync(response.BodyWriter, streaming, opening: false, context.RequestAborted).ConfigureAwait(false);
            return;
        }

        // A new session: the WebSocket upgrade's checks and counts, refused as pusher-js reads a refusal (the error, then the close with its code).
        if (broker.Check(key, context.Request.Query["protocol"].ToString(), out var code, out var refusal) is not { } principal)
        {
            await RefuseAsync(response, code, refusal).ConfigureAwait(false);
            return;
        }

        // A session holds memory for up to HttpSessionTimeoutSeconds with no socket open: it counts as a connection of
        // its address and of the node (Relay:Ingress:MaxConnections, MaxConnectionsPerIp, ConnectionRatePerIp) besides
        // the sockets that carry it, so one client cannot open sessions without bound.
        var gate = context.RequestServices.GetRequiredService<ConnectionGate>();
        var address = context.Connection.RemoteIpAddress is { } ip ? gate.Addresses.AddressOf(new IPEndPoint(ip, context.Connection.RemotePort)) : null;
        if (gate.TryEnter(address) is var admission and not Admission.Admitted)
        {
            await RefuseAsync(response, PusherConnection.OverCapacity, admission == Admission.NodeFull
                ? "over capacity: this node is at Relay:Ingress:MaxConnections; reconnect later"
                : "over capacity: too many connections or sessions from this address (Relay:Ingress:MaxConnectionsPerIp, ConnectionRatePerIp); reconnect later").ConfigureAwait(false);
            return;
        }

        if (await broker.TryCountAsync(principal.AppId, context.RequestAborted).ConfigureAwait(false) is { } overQuota)
        {
            gate.Exit(address);
            await RefuseAsync(response, PusherConnection.OverConnectionQuota, overQuota).ConfigureAwait(false);
            return;
        }

        var created = new PusherHttpSession(id, broker);
        var connection = new PusherConnection(created, created, broker, principal);
        created.Connection = connection;
        var added = all.GetOrAdd(created);
        if (!ReferenceEquals(added, created))
        {
            // Another request opened it meanwhile.
            broker.Release(principal.AppId);
            gate.Exit(address);
            await added.ServeAsync(response.BodyWriter, streaming, opening: false, context.RequestAborted).ConfigureAwait(false);
            return;
        }

        _ = RunAsync(connection, created, broker, all, principal.AppId, gate, address);
        await created.ServeAsync(response.BodyWriter, streaming, opening: true, context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Serves the session's connection until it ends, then gives back its counts (app, node, address) and its id.</summary>
    private static async Task RunAsync(PusherConnection connection, PusherHttpSession session, PusherBroker broker, PusherHttpSessions all, string app, ConnectionGate gate, IPAddress? address)
    {
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            session.Abort();
            all.Remove(session);
            broker.Release(app);
            gate.Exit(address);
        }
    }

    private static async Task RefuseAsync(HttpResponse response, int code, string message)
    {
        var body = response.BodyWriter;
        body.Write("o\na"u8);
        body.Write(JsonSerializer.SerializeToUtf8Bytes(new[] { Encoding.UTF8.GetString(PusherFrames.Error(code, message)) }));
        body.Write("\n"u8);
        PusherHttpSession.WriteClose(body, code, message);
        await body.FlushAsync(response.HttpContext.RequestAborted).ConfigureAwait(false);
    }

    private static async Task SendAsync(HttpContext context, string key, string server, string session, PusherBroker broker, PusherHttpSessions all)
    {
        AllowOrigin(context.Response);
        if (all.Find(key + "/" + server + "/" + session) is not { } found)
        {
            await PusherHttpApi.Text(StatusCodes.Status404NotFound, $"no session {server}/{session} of key {key} on this node: it ended, or was opened on another node (fallback sessions need sticky routing); open one with xhr_streaming or xhr").ExecuteAsync(context).ConfigureAwait(false);
            return;
        }

        // One frame may be twice MaxEventBytes plus its names (the WebSocket's limit), and escaping it as a JSON string can double it again.
        var (body, unread) = await PusherHttpAuth.ReadBodyAsync(context, 2L * found.Connection!.MaxFrameBytes).ConfigureAwait(false);
        if (unread is not null)
        {
            await unread.ExecuteAsync(context).ConfigureAwait(false);
            return;
        }

        var frames = ReadFrames(body);
        if (frames is null)
        {
            await PusherHttpApi.Text(StatusCodes.Status400BadRequest, "Broken JSON encoding: the body must be a JSON array of strings, each one Pusher frame (pusher-js sends [\"{\\\"event\\\":…}\"])").ExecuteAsync(context).ConfigureAwait(false);
            return;
        }

        if (!await found.PostAsync(frames, context.RequestAborted).ConfigureAwait(false))
        {
            await PusherHttpApi.Text(StatusCodes.Status404NotFound, $"session {server}/{session} has ended: connect again").ExecuteAsync(context).ConfigureAwait(false);
            return;
        }

        context.Response.StatusCode = StatusCodes.Status204NoContent;
    }

    /// <summary>
    /// The frames of an <c>xhr_send</c> body (a JSON array of strings), or null when it is not one: each string unescaped
    /// straight from the body's UTF-8 into one array for the whole body (unescaping never lengthens a string), the frames
    /// slices of it. No string, no array per frame; the array lives until the session's connection has handled them.
    /// </summary>
    private static List<ReadOnlyMemory<byte>>? ReadFrames(byte[] body)
    {
        // As PusherJson refuses: bytes that are not UTF-8 here, escapes that are not text (lone surrogates) below.
        if (!System.Text.Unicode.Utf8.IsValid(body))
        {
            return null;
        }

        var frames = new List<ReadOnlyMemory<byte>>();
        var unescaped = new byte[body.Length];
        var used = 0;
        var reader = new Utf8JsonReader(body);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
            {
                return null;
            }

            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                if (reader.TokenType != JsonTokenType.String)
                {
                    return null;
                }

                var length = reader.CopyString(unescaped.AsSpan(used));
                frames.Add(unescaped.AsMemory(used, length));
                used += length;
            }

            // The array closed, and nothing follows it (the reader throws for anything but whitespace).
            return reader.TokenType == JsonTokenType.EndArray && !reader.Read() ? frames : null;
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            return null;
        }
    }
}
