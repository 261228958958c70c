using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Auth;
using Relay.Ingress.Realtime;

namespace Relay.Ingress.WebSockets;

/// <summary>
/// A Kestrel connection middleware that takes a connection whose first request is an authorised WebSocket upgrade
/// to <c>/v1/realtime</c> and serves it on a <see cref="PipeWebSocket"/>, so a realtime connection holds no HTTP
/// request objects for its whole life. Anything else (other paths, refused credentials, TLS, HTTP/2) is handed to
/// Kestrel untouched, and the normal endpoint answers it.
/// </summary>
internal sealed class RealtimeUpgradeMiddleware(ConnectionDelegate next, IServiceProvider services)
{
    /// <summary>A request head larger than this is not ours to parse; Kestrel gets it.</summary>
    private const int MaxHeadBytes = 8 * 1024;

    /// <summary>Matches Kestrel's default request-headers timeout: a silent connection is handed over after it.</summary>
    private static readonly TimeSpan HeadTimeout = TimeSpan.FromSeconds(30);

    private static readonly byte[] Prefix = "GET /v1/realtime"u8.ToArray();
    private static readonly byte[] HeadEnd = "\r\n\r\n"u8.ToArray();

    public async Task InvokeAsync(ConnectionContext connection)
    {
        var accepted = await AcceptAsync(connection).ConfigureAwait(false);
        if (accepted is null)
        {
            await next(connection).ConfigureAwait(false);
            return;
        }

        // Only what the connection needs crosses into its lifetime: the parsed request and its headers do not.
        var (principal, subProtocol, response) = accepted.Value;
        await ServeAsync(connection, principal, subProtocol, response).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads the request head; when it is an authorised upgrade to <c>/v1/realtime</c>, consumes it and returns the
    /// principal and the 101 response. Null leaves the connection untouched for Kestrel.
    /// </summary>
    private async Task<(RelayPrincipal Principal, string? SubProtocol, byte[] Response)?> AcceptAsync(ConnectionContext connection)
    {
        var head = await PeekHeadAsync(connection.Transport.Input, connection.ConnectionClosed).ConfigureAwait(false);
        if (head is null || Authorize(head.Value.Text) is not { } accepted)
        {
            return null;
        }

        // The peek gave everything back; read it again and consume just the request head.
        var input = connection.Transport.Input;
        var again = await input.ReadAsync().ConfigureAwait(false);
        input.AdvanceTo(again.Buffer.GetPosition(head.Value.Length));
        return accepted;
    }

    /// <summary>Parses and authenticates the upgrade request; null when it is not ours or its credentials are refused.</summary>
    private (RelayPrincipal Principal, string? SubProtocol, byte[] Response)? Authorize(string head)
    {
        if (!TryParseUpgrade(head, out var upgrade))
        {
            return null;
        }

        var auth = services.GetRequiredService<IRelayAuthenticator>().Authenticate(upgrade.Context);
        if (!auth.Succeeded)
        {
            // The endpoint answers refused credentials with the HTTP API's status and JSON body.
            return null;
        }

        var accept = Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(upgrade.Key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
        var response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n"
            + (upgrade.SubProtocol is null ? string.Empty : "Sec-WebSocket-Protocol: " + upgrade.SubProtocol + "\r\n") + "\r\n";
        return (auth.Principal, upgrade.SubProtocol, Encoding.ASCII.GetBytes(response));
    }

    private Task ServeAsync(ConnectionContext connection, RelayPrincipal principal, string? subProtocol, byte[] response)
    {
        var node = services.GetRequiredService<IngressNode>();

        // Where Kestrel exposes the socket, sends go to it directly (see DirectSender); reads stay on the pipe.
        var direct = node.Options.DirectSocketSends ? connection.Features.Get<IConnectionSocketFeature>()?.Socket : null;
        var socket = new PipeWebSocket(connection.Transport, subProtocol, connection.Abort, node.Time, direct);
        socket.SendRaw(response);
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger<RealtimeConnection>();

        // The connection owns the socket and disposes it when it ends.
        return new RealtimeConnection(socket, principal, node, services.GetRequiredService<IRelayAuthenticator>(), logger).RunAsync();
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
            if (!StartsLikeOurs(data))
            {
                input.AdvanceTo(data.Start);
                return null;
            }

            var reader = new SequenceReader<byte>(data);
            if (reader.TryReadTo(out ReadOnlySequence<byte> headBytes, HeadEnd, advancePastDelimiter: true))
            {
                var text = Encoding.Latin1.GetString(headBytes);
                input.AdvanceTo(data.Start);
                return (text, reader.Consumed);
            }

            if (data.Length > MaxHeadBytes || read.IsCompleted)
            {
                input.AdvanceTo(data.Start);
                return null;
            }

            input.AdvanceTo(data.Start, data.End);
        }
    }

    private static bool StartsLikeOurs(ReadOnlySequence<byte> data)
    {
        var length = (int)Math.Min(data.Length, Prefix.Length);
        Span<byte> start = stackalloc byte[Prefix.Length];
        data.Slice(0, length).CopyTo(start);
        return start[..length].SequenceEqual(Prefix.AsSpan(0, length));
    }

    private static bool TryParseUpgrade(string head, out Upgrade upgrade)
    {
        upgrade = default;
        var lines = head.Split("\r\n");
        var requestLine = lines[0].Split(' ');
        if (requestLine.Length != 3 || requestLine[0] != "GET" || requestLine[2] != "HTTP/1.1")
        {
            return false;
        }

        var target = requestLine[1];
        var question = target.IndexOf('?', StringComparison.Ordinal);
        if ((question < 0 ? target : target[..question]) != "/v1/realtime")
        {
            return false;
        }

        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = "/v1/realtime";
        if (question >= 0)
        {
            context.Request.QueryString = new QueryString(target[question..]);
        }

        for (var i = 1; i < lines.Length; i++)
        {
            var colon = lines[i].IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                return false;
            }

            var name = lines[i][..colon].Trim();
            var value = lines[i][(colon + 1)..].Trim();
            var headers = context.Request.Headers;
            headers[name] = headers.TryGetValue(name, out var existing) ? existing + "," + value : value;
        }

        var requestHeaders = context.Request.Headers;
        if (!HasToken(requestHeaders.Upgrade.ToString(), "websocket") || !HasToken(requestHeaders.Connection.ToString(), "upgrade")
            || requestHeaders.SecWebSocketVersion.ToString() != "13")
        {
            return false;
        }

        var key = requestHeaders.SecWebSocketKey.ToString();
        Span<byte> decoded = stackalloc byte[24];
        if (!Convert.TryFromBase64String(key, decoded, out var written) || written != 16)
        {
            return false;
        }

        var subProtocol = HasToken(requestHeaders.SecWebSocketProtocol.ToString(), RealtimeEndpoint.SubProtocol) ? RealtimeEndpoint.SubProtocol : null;
        upgrade = new Upgrade(context, key, subProtocol);
        return true;
    }

    private static bool HasToken(string header, string token)
    {
        foreach (var part in header.Split(','))
        {
            if (part.Trim().Equals(token, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    private readonly record struct Upgrade(DefaultHttpContext Context, string Key, string? SubProtocol);
}
