using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Relay.Auth.Tests;

/// <summary>Mints and reads JWTs by hand, independent of the service's JWT code, as a customer's backend would.</summary>
internal static class Jwt
{
    public static Dictionary<string, object?> Claims(ManualClock clock, string app = "test", TimeSpan? lifetime = null, object? cap = null, string? sub = null)
    {
        var now = clock.GetUtcNow();
        var claims = new Dictionary<string, object?>
        {
            ["app"] = app,
            ["iat"] = now.ToUnixTimeSeconds(),
            ["exp"] = (now + (lifetime ?? TimeSpan.FromMinutes(10))).ToUnixTimeSeconds(),
            ["cap"] = cap ?? new Dictionary<string, string[]> { ["*"] = ["*"] },
        };
        if (sub is not null)
        {
            claims["sub"] = sub;
        }

        return claims;
    }

    /// <summary>An HS256 token (or another <paramref name="alg"/>: <c>none</c> leaves the signature empty).</summary>
    public static string Hs256(string? kid, string secret, Dictionary<string, object?> claims, string alg = "HS256")
    {
        var header = new Dictionary<string, string> { ["alg"] = alg, ["typ"] = "JWT" };
        if (kid is not null)
        {
            header["kid"] = kid;
        }

        var signingInput = Encode(JsonSerializer.SerializeToUtf8Bytes(header)) + "." + Encode(JsonSerializer.SerializeToUtf8Bytes(claims));
        var key = Encoding.UTF8.GetBytes(secret);
        var input = Encoding.ASCII.GetBytes(signingInput);
        var signature = alg switch
        {
            "none" => [],
            "HS512" => HMACSHA512.HashData(key, input),
            _ => HMACSHA256.HashData(key, input),
        };
        return signingInput + "." + Encode(signature);
    }

    public static JsonElement Header(string token) => Part(token, 0);

    public static JsonElement Payload(string token) => Part(token, 1);

    /// <summary>The token with its payload replaced (signature kept), as an attacker would try.</summary>
    public static string WithPayload(string token, Dictionary<string, object?> claims)
    {
        var parts = token.Split('.');
        return parts[0] + "." + Encode(JsonSerializer.SerializeToUtf8Bytes(claims)) + "." + parts[2];
    }

    private static JsonElement Part(string token, int index) =>
        JsonDocument.Parse(Base64Url.DecodeFromChars(token.Split('.')[index])).RootElement.Clone();

    private static string Encode(byte[] bytes) => Base64Url.EncodeToString(bytes);
}
