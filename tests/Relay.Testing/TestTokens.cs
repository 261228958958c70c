using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Relay.Testing;

/// <summary>Mints customer-style HS256 JWTs by hand (independent of the server's JWT library), as a customer backend would.</summary>
public static class TestTokens
{
    /// <summary>A token for <paramref name="kid"/> (APPID.KEYID) signed with <paramref name="secret"/>.</summary>
    public static string Hs256(string kid, string secret, Dictionary<string, object?> claims, string alg = "HS256")
    {
        ArgumentNullException.ThrowIfNull(secret);
        var header = Base64Url(JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["alg"] = alg, ["typ"] = "JWT", ["kid"] = kid }));
        var payload = Base64Url(JsonSerializer.SerializeToUtf8Bytes(claims));
        var signingInput = header + "." + payload;
        var signature = alg == "none" ? string.Empty : Base64Url(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(signingInput)));
        return signingInput + "." + signature;
    }

    /// <summary>A valid token of the test app's root key for <paramref name="clientId"/>, expiring after <paramref name="lifetime"/>.</summary>
    public static string ForRootKey(string? clientId, TimeSpan lifetime, object? capabilities = null)
    {
        var now = DateTimeOffset.UtcNow;
        var claims = new Dictionary<string, object?>
        {
            ["app"] = RelayServer.AppId,
            ["iat"] = now.ToUnixTimeSeconds(),
            ["exp"] = (now + lifetime).ToUnixTimeSeconds(),
            ["cap"] = capabilities ?? new Dictionary<string, string[]> { ["*"] = ["subscribe", "publish", "presence", "history"] },
        };
        if (clientId is not null)
        {
            claims["sub"] = clientId;
        }

        return Hs256("test.root", RelayServer.KeySecret, claims);
    }

    /// <summary>
    /// A Relay token from <c>POST v1/tokens</c> on <paramref name="http"/>'s node for <see cref="RelayServer.Key"/>, asked
    /// again every 100 ms (up to 15 s) while the node does not know the key yet (one that follows the auth service's keys
    /// through Redis learns them a moment after it is ready).
    /// </summary>
    public static async Task<string> RequestAsync(HttpClient http)
    {
        ArgumentNullException.ThrowIfNull(http);
        for (var attempt = 0; ; attempt++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri("v1/tokens", UriKind.Relative)) { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
            using var response = await http.SendAsync(request).ConfigureAwait(false);
            var body = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                return JsonDocument.Parse(body).RootElement.GetProperty("token").GetString()!;
            }

            if (attempt >= 150)
            {
                throw new TimeoutException($"no token from {http.BaseAddress} within 15 s: the last answer was {(int)response.StatusCode} {body}");
            }

            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
