using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Relay.Auth;
using Relay.Core.Protocol;
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
            // Credentials are checked before the upgrade, so a refused client gets the HTTP status and JSON error body.
            var auth = authenticator.Authenticate(context);
            if (!auth.Succeeded)
            {
                return RelayResults.Error(auth.Error);
            }

            if (!context.WebSockets.IsWebSocketRequest)
            {
                return RelayResults.Error(ErrorCodes.BadRequest, "GET /v1/realtime needs a WebSocket upgrade");
            }

            var heartbeat = TimeSpan.FromMilliseconds(node.Options.HeartbeatMs);
            using var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext
            {
                SubProtocol = context.WebSockets.WebSocketRequestedProtocols.Contains(SubProtocol) ? SubProtocol : null,
                KeepAliveInterval = heartbeat,
                KeepAliveTimeout = heartbeat * 2,
            }).ConfigureAwait(false);
            var connection = new RealtimeConnection(socket, auth.Principal, node, authenticator, logger);
            await connection.RunAsync().ConfigureAwait(false);
            return Results.Empty;
        });
    }
}
