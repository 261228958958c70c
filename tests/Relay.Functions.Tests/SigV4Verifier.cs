using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Relay.Functions.Tests;

/// <summary>
/// The test Lambda endpoint's own SigV4 check, written from the algorithm (not the SDK): the canonical request from what
/// arrived on the wire (method; the raw path with each segment URI-encoded once more; query; the signed headers,
/// lower-cased and trimmed; the signed-header list; the body's SHA-256), the string to sign, the key derived from the
/// secret through date, region, service and <c>aws4_request</c>, and the signature compared in constant time.
/// </summary>
internal static partial class SigV4Verifier
{
    /// <summary>Null when the request's signature is right for <paramref name="secret"/>; else why not.</summary>
    public static string? Verify(HttpContext context, byte[] body, string accessKeyId, string secret, string region, string service)
    {
        var request = context.Request;
        var match = AuthorizationHeader().Match(request.Headers.Authorization.ToString());
        if (!match.Success)
        {
            return "no AWS4-HMAC-SHA256 Authorization header";
        }

        var (key, date, scopeRegion, scopeService) = (match.Groups["key"].Value, match.Groups["date"].Value, match.Groups["region"].Value, match.Groups["service"].Value);
        var signedHeaders = match.Groups["headers"].Value;
        if (key != accessKeyId || scopeRegion != region || scopeService != service)
        {
            return $"credential scope {key}/{scopeRegion}/{scopeService}, expected {accessKeyId}/{region}/{service}";
        }

        var amzDate = request.Headers["X-Amz-Date"].ToString();
        if (!DateTime.TryParseExact(amzDate, "yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var signedAt)
            || Math.Abs((DateTime.UtcNow - signedAt).TotalMinutes) > 5 || !amzDate.StartsWith(date, StringComparison.Ordinal))
        {
            return $"X-Amz-Date '{amzDate}' is not a time within 5 minutes on {date}";
        }

        var names = signedHeaders.Split(';');
        if (!names.Contains("host") || !names.Contains("x-amz-date") || !names.SequenceEqual(names.Order(StringComparer.Ordinal)))
        {
            return $"SignedHeaders '{signedHeaders}' must be sorted and include host and x-amz-date";
        }

        var bodyHash = Hex(SHA256.HashData(body));
        if (request.Headers["X-Amz-Content-SHA256"].ToString() is { Length: > 0 } claimed && claimed != bodyHash)
        {
            return "X-Amz-Content-SHA256 is not the body's hash";
        }

        var rawTarget = context.Features.Get<IHttpRequestFeature>()!.RawTarget;
        var query = rawTarget.Contains('?', StringComparison.Ordinal) ? rawTarget[(rawTarget.IndexOf('?', StringComparison.Ordinal) + 1)..] : "";
        var path = rawTarget.Split('?')[0];
        var canonical = new StringBuilder()
            .Append(request.Method).Append('\n')
            .Append(string.Join('/', path.Split('/').Select(Encode))).Append('\n')
            .Append(CanonicalQuery(query)).Append('\n');
        foreach (var name in names)
        {
            var value = name == "host" ? request.Host.Value : request.Headers[name].ToString();
            canonical.Append(name).Append(':').Append(Spaces().Replace(value!.Trim(), " ")).Append('\n');
        }

        canonical.Append('\n').Append(signedHeaders).Append('\n').Append(bodyHash);
        var scope = $"{date}/{region}/{service}/aws4_request";
        var stringToSign = $"AWS4-HMAC-SHA256\n{amzDate}\n{scope}\n{Hex(SHA256.HashData(Encoding.UTF8.GetBytes(canonical.ToString())))}";
        var signingKey = Hmac(Hmac(Hmac(Hmac(Encoding.UTF8.GetBytes("AWS4" + secret), date), region), service), "aws4_request");
        var expected = Hmac(signingKey, stringToSign);
        return CryptographicOperations.FixedTimeEquals(expected, Convert.FromHexString(match.Groups["signature"].Value))
            ? null
            : "the signature does not match";
    }

    private static string CanonicalQuery(string query) =>
        string.Join('&', query.Split('&', StringSplitOptions.RemoveEmptyEntries)
            .Select(static p => p.Split('=', 2))
            .Select(static p => (Encode(Uri.UnescapeDataString(p[0])), Encode(Uri.UnescapeDataString(p.Length > 1 ? p[1] : ""))))
            .OrderBy(static p => p.Item1, StringComparer.Ordinal).ThenBy(static p => p.Item2, StringComparer.Ordinal)
            .Select(static p => p.Item1 + "=" + p.Item2));

    // RFC 3986 unreserved characters stay; every other byte is %XX (upper case).
    private static string Encode(string value)
    {
        var encoded = new StringBuilder();
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            if (b is (>= (byte)'A' and <= (byte)'Z') or (>= (byte)'a' and <= (byte)'z') or (>= (byte)'0' and <= (byte)'9') or (byte)'-' or (byte)'_' or (byte)'.' or (byte)'~')
            {
                encoded.Append((char)b);
            }
            else
            {
                encoded.Append('%').Append(b.ToString("X2", CultureInfo.InvariantCulture));
            }
        }

        return encoded.ToString();
    }

    private static byte[] Hmac(byte[] key, string data) => HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(data));

    private static string Hex(byte[] bytes) => Convert.ToHexStringLower(bytes);

    [GeneratedRegex(@"^AWS4-HMAC-SHA256 Credential=(?<key>[^/]+)/(?<date>\d{8})/(?<region>[^/]+)/(?<service>[^/]+)/aws4_request, ?SignedHeaders=(?<headers>[a-z0-9;-]+), ?Signature=(?<signature>[0-9a-f]{64})$")]
    private static partial Regex AuthorizationHeader();

    [GeneratedRegex(" +")]
    private static partial Regex Spaces();
}
