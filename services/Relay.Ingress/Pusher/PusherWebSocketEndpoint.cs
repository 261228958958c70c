using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Relay.Ingress.Limits;
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

    public static void Map(IEndpointRouteBuilder endpoints) =>
        endpoints.Map(Path, static async (HttpContext context, string key) =>
        {
            // Relay's listener may have counted this connection's quota already (and handed it on when it refused).
            var refusedByListener = RefusedOpen.Take(context);
            if (!context.WebSockets.IsWebSocketRequest)
            {
                context.Response.StatusCode = StatusCodes.Status426UpgradeRequired;
                await context.Response.WriteAsync("Pusher protocol: upgrade to a WebSocket at /app/{key}?protocol=7").ConfigureAwait(false);
                return;
            }

            var broker = context.RequestServices.GetRequiredService<PusherBroker>();
            using var socket = await context.WebSockets.AcceptWebSocketAsync().ConfigureAwait(false);
            if (broker.Check(key, context.Request.Query["protocol"].ToString(), out var code, out var refusal) is not { } principal)
            {
                await PusherConnection.RefuseAsync(socket, code, refusal).ConfigureAwait(false);
                return;
            }

            if ((refusedByListener?.Of(principal.AppId)?.Message ?? await broker.TryCountAsync(principal.AppId, context.RequestAborted).ConfigureAwait(false)) is { } overQuota)
            {
                await PusherConnection.RefuseAsync(socket, PusherConnection.OverConnectionQuota, overQuota).ConfigureAwait(false);
                return;
            }

            try
            {
                // One Pusher event per WebSocket message: frames that wait together are not batched (Relay's protocol allows an
                // array frame; Pusher's does not).
                var sender = new FrameworkFrameSender(socket, broker.Node.Options.SendQueueBytes, broker.Node.Metrics, batchFrames: false);
                await new PusherConnection(new PusherWebSocketTransport(socket), sender, broker, principal).RunAsync().ConfigureAwait(false);
            }
            finally
            {
                broker.Release(principal.AppId);
            }
        });
}
