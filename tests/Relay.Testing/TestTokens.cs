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

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
