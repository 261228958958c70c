using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Relay.Testing;

/// <summary>Signs Pusher HTTP API requests by hand: for the requests the SDK would never make (stale, tampered), and for load from .NET.</summary>
public static class PusherHttp
{
    public static HttpRequestMessage Request(RelayServer server, string key, HttpMethod method, string path, string? body = null, long? timestamp = null, string? bodyMd5 = null, string? query = null) =>
        Request(server.BaseAddress, key, method, path, body, timestamp, bodyMd5, query);

    /// <summary>A signed request to the node at <paramref name="baseAddress"/> (a service process's, <c>http://127.0.0.1:{port}/</c>).</summary>
    public static HttpRequestMessage Request(Uri baseAddress, string key, HttpMethod method, string path, string? body = null, long? timestamp = null, string? bodyMd5 = null, string? query = null)
    {
        var colon = key.IndexOf(':', StringComparison.Ordinal);
        var parameters = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["auth_key"] = key[..colon],
            ["auth_timestamp"] = (timestamp ?? DateTimeOffset.UtcNow.ToUnixTimeSeconds()).ToString(CultureInfo.InvariantCulture),
            ["auth_version"] = "1.0",
        };
        if (body is not null)
        {
            parameters["body_md5"] = bodyMd5 ?? Convert.ToHexStringLower(MD5.HashData(Encoding.UTF8.GetBytes(body)));
        }

        foreach (var pair in (query ?? string.Empty).Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            parameters[pair[..eq]] = pair[(eq + 1)..];
        }

        var sorted = string.Join('&', parameters.Select(static p => p.Key + "=" + p.Value));
        var signature = Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(key[(colon + 1)..]), Encoding.UTF8.GetBytes($"{method.Method}\n{path}\n{sorted}")));
        var uri = new Uri(baseAddress, path.TrimStart('/') + "?" + string.Join('&', parameters.Select(static p => p.Key + "=" + Uri.EscapeDataString(p.Value))) + "&auth_signature=" + signature);
        var request = new HttpRequestMessage(method, uri);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        return request;
    }
}
