using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.DependencyInjection;
using Relay.Auth;

namespace Relay.Ingress.WebSockets;

/// <summary>
/// A Kestrel connection middleware that takes a connection whose first request is an authorised WebSocket upgrade
/// to <c>/v1/realtime</c> and serves it on a <see cref="PipeWebSocket"/>, so a realtime connection holds no HTTP
/// request objects for its whole life. Anything else (other paths, refused credentials, TLS, HTTP/2) is handed to
/// Kestrel untouched, and the normal endpoint answers it. Most plain upgrades never get here: the
/// <see cref="RealtimeListenerFactory"/> takes them before they become Kestrel connections.
/// </summary>
internal sealed class RealtimeUpgradeMiddleware(ConnectionDelegate next, IServiceProvider services)
{
    /// <summary>Matches Kestrel's default request-headers timeout: a silent connection is handed over after it.</summary>
    private static readonly TimeSpan HeadTimeout = TimeSpan.FromSeconds(30);

    public async Task InvokeAsync(ConnectionContext connection)
    {
        var accepted = await AcceptAsync(connection).ConfigureAwait(false);
        if (accepted is null)
        {
            await next(connection).ConfigureAwait(false);
            return;
        }

        // Where Kestrel exposes the socket, sends go to it directly (see DirectSender); reads stay on the pipe.
        var node = services.GetRequiredService<IngressNode>();
        var direct = node.Options.DirectSocketSends ? connection.Features.Get<IConnectionSocketFeature>()?.Socket : null;
        await RealtimeHandshake.ServeAsync(connection.Transport, direct, connection.Abort, accepted.Value, services).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads the request head; when it is an authorised upgrade to <c>/v1/realtime</c>, consumes it and returns the
    /// principal and the 101 response. Null leaves the connection untouched for Kestrel.
    /// </summary>
    private async Task<RealtimeHandshake.Accepted?> AcceptAsync(ConnectionContext connection)
    {
        var head = await PeekHeadAsync(connection.Transport.Input, connection.ConnectionClosed).ConfigureAwait(false);
        if (head is null || RealtimeHandshake.TryAccept(head.Value.Text, services.GetRequiredService<IRelayAuthenticator>()) is not { } accepted)
        {
            return null;
        }

        // The peek gave everything back; read it again and consume just the request head.
        var input = connection.Transport.Input;
        var again = await input.ReadAsync().ConfigureAwait(false);
        input.AdvanceTo(again.Buffer.GetPosition(head.Value.Length));
        return accepted;
    }

    /// <summary>Reads until the request head is complete, without consuming it; null hands the connection to Kestrel as is.</summary>
    private static async Task<(string Text, long Length)?> PeekHeadAsync(PipeReader input, CancellationToken closed)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(closed);
        timeout.CancelAfter(HeadTimeout);
        while (true)
        {
            ReadResult read;
            try
            {
                read = await input.ReadAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return null;
            }

            var data = read.Buffer;
            var start = data.Slice(0, Math.Min(data.Length, RealtimeHandshake.MaxHeadBytes + 4));
            var bytes = start.IsSingleSegment ? start.FirstSpan : start.ToArray();
            if (!RealtimeHandshake.StartsLikeOurs(bytes))
            {
                input.AdvanceTo(data.Start);
                return null;
            }

            var length = RealtimeHandshake.HeadLength(bytes);
            if (length > 0)
            {
                var text = Encoding.Latin1.GetString(bytes[..(length - 4)]);
                input.AdvanceTo(data.Start);
                return (text, length);
            }

            if (data.Length > RealtimeHandshake.MaxHeadBytes || read.IsCompleted)
            {
                input.AdvanceTo(data.Start);
                return null;
            }

            input.AdvanceTo(data.Start, data.End);
        }
    }
}
