using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;
using Relay.Core.Protocol;
using Relay.Core.Auth;
using Relay.Ingress.Http;
using Relay.Ingress.Limits;
using Relay.Ingress.Sending;
using Relay.ServiceDefaults;

namespace Relay.Ingress.Realtime;

/// <summary>The WebSocket endpoint <c>GET /v1/realtime</c>.</summary>
internal static class RealtimeEndpoint
{
    public const string SubProtocol = "relay.v1.json";

    public static void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/v1/realtime", static async (HttpContext context, IRelayAuthenticator authenticator, IngressNode node, ILogger<RealtimeConnection> logger) =>
        {
            // Relay's listener may have asked the app's limit already (and handed the connection on when it refused).
            var refusedByListener = RefusedOpen.Take(context);

            // Credentials are checked before the upgrade, so a refused client gets the HTTP status and JSON error body.
            var auth = authenticator.Authenticate(context);
            if (!auth.Succeeded)
            {
                return RelayResults.Error(auth.Error);
            }

            if (RefuseUpgrade(context.Request) is { } refused)
            {
                return refused;
            }

            if (!context.WebSockets.IsWebSocketRequest)
            {
                return RelayResults.Error(ErrorCodes.BadRequest, "GET /v1/realtime needs a WebSocket upgrade");
            }

            var app = auth.Principal.AppId;
            if ((refusedByListener?.Of(app) ?? await node.AppLimits.TryOpenAsync(app, context.RequestAborted).ConfigureAwait(false)) is { } overLimit)
            {
                return AppLimits.Refusal(context, overLimit);
            }

            try
            {
                await ServeAsync(context, auth.Principal, node, authenticator, logger).ConfigureAwait(false);
            }
            finally
            {
                node.AppLimits.Closed(app);
            }

            return Results.Empty;
        }).AddEndpointFilter(RefusalLog.FilterAtOnce);
    }

    private static async Task ServeAsync(HttpContext context, RelayPrincipal principal, IngressNode node, IRelayAuthenticator authenticator, ILogger<RealtimeConnection> logger)
    {
        var heartbeat = TimeSpan.FromMilliseconds(node.Options.HeartbeatMs);
        using var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext
        {
            SubProtocol = context.WebSockets.WebSocketRequestedProtocols.Contains(SubProtocol) ? SubProtocol : null,
            KeepAliveInterval = heartbeat,
            KeepAliveTimeout = heartbeat * 2,
        }).ConfigureAwait(false);
        var sender = new FrameworkFrameSender(socket, node.Options.SendQueueBytes, node.Metrics);
        var connection = new RealtimeConnection(socket, sender, principal, node, authenticator, logger);
        await connection.RunAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// What RFC 6455 refuses and ASP.NET Core's WebSocket middleware would let through or answer vaguely, refused here
    /// the way Relay's own handshake does (it leaves these requests to this endpoint): another protocol version gets 426
    /// naming version 13 (§4.2.2), an HTTP/1.0 upgrade and a header value with control characters get 400.
    /// </summary>
    private static IResult? RefuseUpgrade(HttpRequest request)
    {
        if (request.Headers.Upgrade.Count == 0)
        {
            return null;
        }

        if (HttpProtocol.IsHttp10(request.Protocol))
        {
            return RelayResults.Error(ErrorCodes.BadRequest, "a WebSocket upgrade needs HTTP/1.1");
        }

        foreach (var (name, values) in request.Headers)
        {
            foreach (var value in values)
            {
                if (HasControlCharacter(value))
                {
                    return RelayResults.Error(ErrorCodes.BadRequest, $"header '{name}' holds a control character");
                }
            }
        }

        if (request.Headers.SecWebSocketVersion is not ["13"] && request.Headers.Upgrade.ToString().Contains("websocket", StringComparison.OrdinalIgnoreCase))
        {
            request.HttpContext.Response.Headers.SecWebSocketVersion = "13";
            return RelayResults.Error(ErrorCodes.UpgradeRequired, "Sec-WebSocket-Version must be 13, the only version this server speaks");
        }

        return null;
    }

    private static bool HasControlCharacter(string? value)
    {
        foreach (var c in value ?? string.Empty)
        {
            if (c is (< ' ' and not '\t') or '\u007f')
            {
                return true;
            }
        }

        return false;
    }
}
