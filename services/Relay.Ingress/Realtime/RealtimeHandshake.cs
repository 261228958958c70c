using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Relay.Auth.Verification;
using Relay.Ingress.Pusher;

namespace Relay.Ingress.Realtime;

/// <summary>
/// The realtime WebSocket upgrade as Relay's own transport (<see cref="RealtimeListenerFactory"/>) reads it from the
/// first bytes of a socket Kestrel never sees: find the request head and accept only an authorised
/// <c>GET /v1/realtime</c> upgrade, or a Pusher one (<c>GET /app/{key}?protocol=N</c>) that the Pusher broker admits,
/// with the 101 response to send. Anything else is left to Kestrel, where the normal endpoint answers it (with the HTTP
/// API's status and JSON error body, or Pusher's <c>pusher:error</c> and close code) or serves it on ASP.NET Core's WebSocket.
/// </summary>
internal static class RealtimeHandshake
{
    /// <summary>A request head larger than this is not ours to parse; Kestrel gets it.</summary>
    public const int MaxHeadBytes = 8 * 1024;

    private static readonly SearchValues<char> TokenChars = SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");

    private static ReadOnlySpan<byte> Prefix => "GET /v1/realtime"u8;

    private static ReadOnlySpan<byte> PusherPrefix => "GET /app/"u8;

    private const string PusherPath = "/app/";

    private static ReadOnlySpan<byte> HeadEnd => "\r\n\r\n"u8;

    /// <summary>
    /// What an accepted upgrade carries into the connection's life: the request itself does not. A Pusher upgrade
    /// (<paramref name="Pusher"/>) passed <see cref="PusherBroker.Check"/>; its caller counts it.
    /// </summary>
    public readonly record struct Accepted(RelayPrincipal Principal, string? SubProtocol, byte[] Response, bool Pusher = false);

    /// <summary>Whether bytes that start a connection could still be a realtime or Pusher upgrade.</summary>
    public static bool StartsLikeOurs(ReadOnlySpan<byte> start) => StartsWith(start, Prefix) || StartsWith(start, PusherPrefix);

    private static bool StartsWith(ReadOnlySpan<byte> start, ReadOnlySpan<byte> prefix)
    {
        var length = Math.Min(start.Length, prefix.Length);
        return start[..length].SequenceEqual(prefix[..length]);
    }

    /// <summary>The length of the request head (through its blank line) when <paramref name="data"/> holds all of it; otherwise -1.</summary>
    public static int HeadLength(ReadOnlySpan<byte> data)
    {
        var end = data.IndexOf(HeadEnd);
        return end < 0 ? -1 : end + HeadEnd.Length;
    }

    /// <summary>
    /// Parses and authenticates a request head; null when it is not a realtime upgrade or its credentials are refused, or
    /// when it is a Pusher upgrade that <paramref name="pusher"/> (null: Pusher is off) refuses.
    /// </summary>
    public static Accepted? TryAccept(string head, IRelayAuthenticator authenticator, PusherBroker? pusher = null)
    {
        if (!TryParseUpgrade(head, out var upgrade))
        {
            return null;
        }

        RelayPrincipal principal;
        if (upgrade.PusherKey is { } key)
        {
            if (pusher is null || pusher.Check(key, upgrade.Context.Request.Query["protocol"].ToString(), out _, out _) is not { } admitted)
            {
                return null;
            }

            principal = admitted;
        }
        else
        {
            var auth = authenticator.Authenticate(upgrade.Context);
            if (!auth.Succeeded)
            {
                return null;
            }

            principal = auth.Principal;
        }

        var accept = Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(upgrade.Key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
        var response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n"
            + (upgrade.SubProtocol is null ? string.Empty : "Sec-WebSocket-Protocol: " + upgrade.SubProtocol + "\r\n") + "\r\n";
        return new Accepted(principal, upgrade.SubProtocol, Encoding.ASCII.GetBytes(response), upgrade.PusherKey is not null);
    }

    /// <summary>
    /// Reads a head only when it is a plainly well-formed RFC 6455 opening handshake (RFC 6455 §4.2.1 over RFC 9112's
    /// syntax); anything unusual (no or two <c>Host</c>s, control or non-ASCII bytes, a header name that is not a token,
    /// folded lines, HTTP/1.0, another method or version) is left to Kestrel, which answers it as it answers any
    /// request: refused with 400, or served by the endpoint, which refuses what this handshake would (426 for another
    /// <c>Sec-WebSocket-Version</c>).
    /// </summary>
    private static bool TryParseUpgrade(string head, out Upgrade upgrade)
    {
        upgrade = default;
        var lines = head.Split("\r\n");
        var requestLine = lines[0].Split(' ');
        if (requestLine.Length != 3 || requestLine[0] != "GET" || requestLine[2] != "HTTP/1.1" || !IsVisibleAscii(requestLine[1]))
        {
            return false;
        }

        var target = requestLine[1];
        var question = target.IndexOf('?', StringComparison.Ordinal);
        var path = question < 0 ? target : target[..question];

        // A Pusher key is APPID.KEYID: anything escaped or with more segments is the endpoint's to answer.
        var pusherKey = path.StartsWith(PusherPath, StringComparison.Ordinal) && path.Length > PusherPath.Length && path.AsSpan(PusherPath.Length).IndexOfAny('/', '%') < 0
            ? path[PusherPath.Length..]
            : null;
        if (path != "/v1/realtime" && pusherKey is null)
        {
            return false;
        }

        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = path;
        if (question >= 0)
        {
            context.Request.QueryString = new QueryString(target[question..]);
        }

        var hosts = 0;
        for (var i = 1; i < lines.Length; i++)
        {
            var line = lines[i];
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || !IsToken(line.AsSpan(0, colon)) || !IsFieldValue(line.AsSpan(colon + 1)))
            {
                return false;
            }

            var name = line[..colon];
            var value = line[(colon + 1)..].Trim(' ', '\t');
            hosts += name.Equals("Host", StringComparison.OrdinalIgnoreCase) ? 1 : 0;
            var headers = context.Request.Headers;
            headers[name] = headers.TryGetValue(name, out var existing) ? existing + "," + value : value;
        }

        var requestHeaders = context.Request.Headers;
        if (hosts != 1 || requestHeaders.Host.ToString().Length == 0
            || !HasToken(requestHeaders.Upgrade.ToString(), "websocket") || !HasToken(requestHeaders.Connection.ToString(), "upgrade")
            || requestHeaders.SecWebSocketVersion.Count != 1 || requestHeaders.SecWebSocketVersion.ToString() != "13")
        {
            return false;
        }

        var key = requestHeaders.SecWebSocketKey;
        Span<byte> decoded = stackalloc byte[24];
        if (key.Count != 1 || !Convert.TryFromBase64String(key.ToString(), decoded, out var written) || written != 16)
        {
            return false;
        }

        var subProtocol = pusherKey is null && HasToken(requestHeaders.SecWebSocketProtocol.ToString(), RealtimeEndpoint.SubProtocol) ? RealtimeEndpoint.SubProtocol : null;
        upgrade = new Upgrade(context, key.ToString(), subProtocol, pusherKey);
        return true;
    }

    /// <summary>A header name: one or more token characters (RFC 9110 §5.6.2).</summary>
    private static bool IsToken(ReadOnlySpan<char> name) => !name.IsEmpty && !name.ContainsAnyExcept(TokenChars);

    /// <summary>A header value of visible ASCII, spaces and tabs only: no control characters, no obs-text.</summary>
    private static bool IsFieldValue(ReadOnlySpan<char> value)
    {
        foreach (var c in value)
        {
            if (c is (< ' ' and not '\t') or > '~')
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsVisibleAscii(string text) => text.Length > 0 && !text.AsSpan().ContainsAnyExceptInRange('!', '~');

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

    private readonly record struct Upgrade(DefaultHttpContext Context, string Key, string? SubProtocol, string? PusherKey);
}
