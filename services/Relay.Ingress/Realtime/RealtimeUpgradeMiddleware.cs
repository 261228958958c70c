using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.DependencyInjection;
using Relay.Auth;
using Relay.Ingress.WebSockets;

namespace Relay.Ingress.Realtime;

/// <summary>
/// A Kestrel connection middleware that takes a connection whose first request is an authorised WebSocket upgrade
/// to <c>/v1/realtime</c> and serves it on a <see cref="PipeWebSocket"/>, so a realtime connection holds no HTTP
/// request objects for its whole life. Anything else (other paths, refused credentials, TLS, HTTP/2, a head not whole
/// at the first read) is handed to Kestrel untouched, and the normal endpoint answers it. Most plain upgrades never
/// get here: the <see cref="RealtimeListenerFactory"/> takes them before they become Kestrel connections.
/// </summary>
internal sealed class RealtimeUpgradeMiddleware(ConnectionDelegate next, IServiceProvider services)
{
    /// <summary>
    /// How long a connection may stay silent before it is handed over as it is: Kestrel's own timeouts start only once
    /// it has the connection, so this wait comes on top of them (the listener at accept waits as long).
    /// </summary>
    private static readonly TimeSpan FirstBytesWait = RealtimeListenerFactory.FirstBytesWait;

    public async Task InvokeAsync(ConnectionContext connection)
    {
        // Sends go to the socket Kestrel exposes (see DirectSender); reads stay on Kestrel's pipe.
        var socket = connection.Features.Get<IConnectionSocketFeature>()?.Socket;
        var accepted = socket is null ? null : await AcceptAsync(connection).ConfigureAwait(false);
        if (accepted is null)
        {
            await next(connection).ConfigureAwait(false);
            return;
        }

        await RealtimeHandshake.ServeAsync(connection.Transport.Input, socket!, connection.Abort, accepted.Value, services).ConfigureAwait(false);
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

    /// <summary>
    /// Waits (a little) for the first bytes and looks at what has arrived, without consuming or examining it; null hands
    /// the connection to Kestrel as is. A head not whole in that first read (sent in pieces, trickled, cut short, or
    /// ended by bare line feeds) is Kestrel's at once: waiting here for the rest would add to Kestrel's request-head
    /// timeout, whose clock starts only when Kestrel reads, and bytes marked examined here would make Kestrel's first
    /// read wait for more until its keep-alive timeout (a cut head was held 192 s, a bare-LF one answered after 161 s).
    /// </summary>
    private static async Task<(string Text, long Length)?> PeekHeadAsync(PipeReader input, CancellationToken closed)
    {
        using var silence = CancellationTokenSource.CreateLinkedTokenSource(closed);
        silence.CancelAfter(FirstBytesWait);
        ReadResult read;
        try
        {
            read = await input.ReadAsync(silence.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return null;
        }

        var data = read.Buffer;
        var start = data.Slice(0, Math.Min(data.Length, RealtimeHandshake.MaxHeadBytes + 4));
        var bytes = start.IsSingleSegment ? start.FirstSpan : start.ToArray();
        var length = RealtimeHandshake.StartsLikeOurs(bytes) ? RealtimeHandshake.HeadLength(bytes) : -1;
        var head = length > 0 ? ((string Text, long Length)?)(Encoding.Latin1.GetString(bytes[..(length - 4)]), length) : null;

        // Nothing consumed, nothing examined: the next read (ours or Kestrel's) returns these bytes at once.
        input.AdvanceTo(data.Start);
        return head;
    }
}
