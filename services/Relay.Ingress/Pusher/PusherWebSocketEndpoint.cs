using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Relay.Ingress.Sending;

namespace Relay.Ingress.Pusher;

/// <summary>
/// The Pusher WebSocket at <c>/app/{key}</c> (<c>?protocol=7</c>): the key is a Relay key's name (<c>APPID.KEYID</c>).
/// A refused connection is upgraded, told <c>pusher:error</c> with the protocol's code and closed with it, as Pusher
/// does (pusher-js reads the code to decide whether to reconnect).
/// </summary>
internal static class PusherWebSocketEndpoint
{
    public const string Path = "/app/{key}";

    /// <summary>Protocol versions served: pusher-js 8 speaks 7; 5 and 6 differ from it in nothing the server sends.</summary>
    private const int MinProtocol = 5;
    private const int MaxProtocol = 7;

    public static void Map(IEndpointRouteBuilder endpoints) =>
        endpoints.Map(Path, static async (HttpContext context, string key) =>
        {
            if (!context.WebSockets.IsWebSocketRequest)
            {
                context.Response.StatusCode = StatusCodes.Status426UpgradeRequired;
                await context.Response.WriteAsync("Pusher protocol: upgrade to a WebSocket at /app/{key}?protocol=7").ConfigureAwait(false);
                return;
            }

            var broker = context.RequestServices.GetRequiredService<PusherBroker>();
            using var socket = await context.WebSockets.AcceptWebSocketAsync().ConfigureAwait(false);
            var protocol = context.Request.Query["protocol"].ToString();
            if (protocol.Length == 0)
            {
                await PusherConnection.RefuseAsync(socket, PusherConnection.NoProtocol, "No protocol version supplied: connect to /app/{key}?protocol=7").ConfigureAwait(false);
                return;
            }

            if (!int.TryParse(protocol, NumberStyles.None, CultureInfo.InvariantCulture, out var version) || version is < MinProtocol or > MaxProtocol)
            {
                await PusherConnection.RefuseAsync(socket, PusherConnection.UnsupportedProtocol, $"Unsupported protocol version {protocol}: this server speaks {MinProtocol} to {MaxProtocol}").ConfigureAwait(false);
                return;
            }

            if (broker.Keys.Find(key) is not { } principal)
            {
                await PusherConnection.RefuseAsync(socket, PusherConnection.AppDoesNotExist, $"App key {key} does not exist").ConfigureAwait(false);
                return;
            }

            var app = broker.App(principal.AppId);
            if (app is { Enabled: false })
            {
                await PusherConnection.RefuseAsync(socket, PusherConnection.AppDisabled, $"App {principal.AppId} is disabled (Relay:Pusher:Apps:{principal.AppId}:Enabled)").ConfigureAwait(false);
                return;
            }

            if (!broker.TryOpen(principal.AppId, app?.MaxConnections ?? 0))
            {
                await PusherConnection.RefuseAsync(socket, PusherConnection.OverConnectionQuota, $"App {principal.AppId} is over its connection quota ({app!.MaxConnections} on this node, Relay:Pusher:Apps:{principal.AppId}:MaxConnections)").ConfigureAwait(false);
                return;
            }

            // The app's limits over every protocol, on this node and across the cluster (Relay:Ingress:AppLimits), answered as
            // Pusher's own quota is.
            if (await broker.Node.AppLimits.TryOpenAsync(principal.AppId, context.RequestAborted).ConfigureAwait(false) is { } overLimit)
            {
                broker.Closed(principal.AppId);
                await PusherConnection.RefuseAsync(socket, PusherConnection.OverConnectionQuota, overLimit.Message).ConfigureAwait(false);
                return;
            }

            try
            {
                // One Pusher event per WebSocket message: frames that wait together are not batched (Relay's protocol allows an
                // array frame; Pusher's does not).
                var sender = new FrameworkFrameSender(socket, broker.Node.Options.SendQueueBytes, broker.Node.Metrics, batchFrames: false);
                await new PusherConnection(socket, sender, broker, principal).RunAsync().ConfigureAwait(false);
            }
            finally
            {
                broker.Node.AppLimits.Closed(principal.AppId);
                broker.Closed(principal.AppId);
            }
        });
}
