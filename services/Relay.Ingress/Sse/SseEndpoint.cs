using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;
using Relay.Core.Auth;
using Relay.Core.Channels;
using Relay.Core.Protocol;
using Relay.Ingress.Http;
using Relay.Ingress.Limits;
using Relay.ServiceDefaults;

namespace Relay.Ingress.Sse;

/// <summary><c>GET /v1/sse?channel=a&amp;channel=b</c> with a key or token; <c>Last-Event-ID</c> resumes.</summary>
internal static class SseEndpoint
{
    public static void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/v1/sse", static async (HttpContext context, IRelayAuthenticator authenticator, IngressNode node, ILogger<SseConnection> logger) =>
        {
            var auth = authenticator.Authenticate(context);
            if (!auth.Succeeded)
            {
                return RelayResults.Error(auth.Error);
            }

            var channels = context.Request.Query["channel"].Where(static c => c is not null).Select(static c => c!).Distinct(StringComparer.Ordinal).ToList();
            if (channels.Count == 0)
            {
                return RelayResults.Error(ErrorCodes.BadRequest, "name at least one channel: /v1/sse?channel=NAME (repeatable)");
            }

            if (channels.Count > node.Options.MaxSubscriptionsPerConnection)
            {
                return RelayResults.Error(ErrorCodes.RateLimited, $"a stream may follow at most {node.Options.MaxSubscriptionsPerConnection} channels");
            }

            foreach (var channel in channels)
            {
                if (!ChannelName.IsValidPattern(channel, out var invalid))
                {
                    return RelayResults.Error(ErrorCodes.InvalidChannel, invalid);
                }

                if (!auth.Principal.Capabilities.Allows(channel, Operations.Subscribe))
                {
                    return RelayResults.Error(RelayError.Forbidden("subscribe", channel));
                }
            }

            // EventSource sends Last-Event-ID on its own reconnects; polyfills that cannot set headers use ?lastEventId=.
            var cursor = context.Request.Headers["Last-Event-ID"].ToString();
            if (cursor.Length == 0)
            {
                cursor = context.Request.Query["lastEventId"].ToString();
            }

            var resume = new Dictionary<string, (string Epoch, long Seq)>(StringComparer.Ordinal);
            if (cursor.Length > 0 && !SseCursor.TryDecode(cursor, out resume))
            {
                return RelayResults.Error(ErrorCodes.BadRequest, "Last-Event-ID is not a cursor this server issued; reconnect without it");
            }

            if (await node.AppLimits.TryOpenAsync(auth.Principal.AppId, context.RequestAborted).ConfigureAwait(false) is { } overLimit)
            {
                return AppLimits.Refusal(context, overLimit);
            }

            var connection = new SseConnection(context, auth.Principal, node, logger);
            try
            {
                await connection.RunAsync(channels, resume).ConfigureAwait(false);
            }
            catch (RelayException ex) when (!context.Response.HasStarted)
            {
                return RelayResults.Error(ex.Error);
            }
            finally
            {
                node.AppLimits.Closed(auth.Principal.AppId);
            }

            return Results.Empty;
        }).AddEndpointFilter(RefusalLog.FilterAtOnce);
    }
}
