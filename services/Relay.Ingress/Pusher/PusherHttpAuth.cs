using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Relay.Auth.Verification;

namespace Relay.Ingress.Pusher;

/// <summary>
/// The signature of a Pusher HTTP API request: <c>auth_key</c> (a Relay key's name, of the app in the path),
/// <c>auth_timestamp</c> within <c>Relay:Pusher:TimestampToleranceSeconds</c>, <c>auth_version=1.0</c>, <c>body_md5</c>
/// of a body, and <c>auth_signature</c> = hex HMAC-SHA256 with the key's secret over <c>METHOD\nPATH\nquery</c>
/// (parameters but the signature, keys lowercased and sorted, values as sent; the path as sent).
/// </summary>
internal static class PusherHttpAuth
{
    /// <summary>Quotes the string to sign in a 401's text as it is, escaping only what JSON must.</summary>
    private static readonly JsonSerializerOptions QuotedText = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Checks the request's signature; the principal of its key, the body, or the refusal.</summary>
    public static async Task<(RelayPrincipal? Principal, byte[] Body, IResult? Failure)> AuthorizeAsync(HttpContext context, string appId, PusherBroker broker)
    {
        var request = context.Request;
        var query = request.Query;
        var key = query["auth_key"].ToString();
        var timestamp = query["auth_timestamp"].ToString();
        var version = query["auth_version"].ToString();
        var signature = query["auth_signature"].ToString();
        if (key.Length == 0 || timestamp.Length == 0 || signature.Length == 0)
        {
            return (null, [], PusherHttpApi.Text(StatusCodes.Status401Unauthorized, "Missing parameter: auth_key, auth_timestamp, auth_version and auth_signature are required"));
        }

        if (version != "1.0")
        {
            return (null, [], PusherHttpApi.Text(StatusCodes.Status401Unauthorized, "Unsupported auth_version: use 1.0"));
        }

        if (broker.Keys.Find(key) is not { } principal || principal.AppId != appId)
        {
            return (null, [], PusherHttpApi.Text(StatusCodes.Status401Unauthorized, $"Unknown auth_key '{key}' for app '{appId}'"));
        }

        var now = broker.Node.Time.GetUtcNow().ToUnixTimeSeconds();
        if (!long.TryParse(timestamp, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || Math.Abs(now - seconds) > broker.Options.TimestampToleranceSeconds)
        {
            return (null, [], PusherHttpApi.Text(StatusCodes.Status401Unauthorized, $"Timestamp expired: Given timestamp ({timestamp}) not within {broker.Options.TimestampToleranceSeconds}s of server time ({now})"));
        }

        byte[] body = [];
        if (HttpMethods.IsPost(request.Method))
        {
            (body, var unread) = await ReadBodyAsync(context, broker.Node.Options.MaxHttpBodyBytes).ConfigureAwait(false);
            if (unread is not null)
            {
                return (null, [], unread);
            }

            if (body.Length > 0)
            {
                var md5 = Convert.ToHexStringLower(MD5.HashData(body));
                if (query["body_md5"].ToString() != md5)
                {
                    return (null, [], PusherHttpApi.Text(StatusCodes.Status401Unauthorized, "Invalid body_md5: it must be the hex MD5 of the request body"));
                }
            }
        }

        var parameters = new List<KeyValuePair<string, string>>();
        foreach (var (name, values) in query)
        {
            if (name != "auth_signature")
            {
                parameters.Add(new(name.ToLowerInvariant(), values.ToString()));
            }
        }

        parameters.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        // The path as the client sent and signed it (a channel name with escapes stays escaped).
        var target = context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget;
        var path = string.IsNullOrEmpty(target) ? request.PathBase.Value + request.Path.Value : target.Split('?', 2)[0];
        var text = new StringBuilder().Append(request.Method.ToUpperInvariant()).Append('\n').Append(path).Append('\n');
        for (var i = 0; i < parameters.Count; i++)
        {
            text.Append(i == 0 ? string.Empty : "&").Append(parameters[i].Key).Append('=').Append(parameters[i].Value);
        }

        var signed = text.ToString();
        if (!PusherSignatures.VerifyHex(broker.Keys, key, signature, signed))
        {
            return (null, [], PusherHttpApi.Text(StatusCodes.Status401Unauthorized, $"Invalid signature: you should have sent HmacSHA256Hex({JsonSerializer.Serialize(signed, QuotedText)}, your_secret_key), but you sent \"{signature}\""));
        }

        return (principal, body, null);
    }

    /// <summary>
    /// Reads a request's body up to <paramref name="limit"/> bytes (the HTTP API's and <c>xhr_send</c>'s); a longer one is
    /// refused 413 and an unreadable one 400, with <c>Connection: close</c> (the rest is not read).
    /// </summary>
    public static async Task<(byte[] Body, IResult? Failure)> ReadBodyAsync(HttpContext context, long limit)
    {
        var request = context.Request;
        if (request.ContentLength > limit)
        {
            context.Response.Headers.Connection = "close";
            return ([], PusherHttpApi.Text(StatusCodes.Status413PayloadTooLarge, $"request body larger than {limit} bytes"));
        }

        using var buffer = new MemoryStream();
        try
        {
            var read = new byte[8192];
            int count;
            while ((count = await request.Body.ReadAsync(read, context.RequestAborted).ConfigureAwait(false)) > 0)
            {
                if (buffer.Length + count > limit)
                {
                    context.Response.Headers.Connection = "close";
                    return ([], PusherHttpApi.Text(StatusCodes.Status413PayloadTooLarge, $"request body larger than {limit} bytes"));
                }

                buffer.Write(read, 0, count);
            }
        }
        catch (BadHttpRequestException ex)
        {
            context.Response.Headers.Connection = "close";
            return ([], PusherHttpApi.Text(StatusCodes.Status400BadRequest, "unreadable request body: " + ex.Message));
        }

        return (buffer.ToArray(), null);
    }
}
