using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Relay.Auth.Keys;
using Relay.Auth.Verification.Keys;
using Relay.Auth.Verification.Tokens;
using Relay.Core.Auth;

namespace Relay.Auth.Tokens;

/// <summary>
/// Issues Relay's ES256 tokens with the private <see cref="SigningKey"/>, through <see cref="JsonWebTokenHandler"/>;
/// <see cref="TokenValidator"/> checks them.
/// </summary>
internal sealed class TokenIssuer(SigningKey signingKey, TimeProvider time)
{
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false };

    /// <summary>Whether this node holds the private signing key.</summary>
    public bool CanIssue => signingKey.Credentials is not null;

    /// <summary>Signs a token for <paramref name="key"/>; the caller has checked the capabilities, client id and lifetime.</summary>
    public (string Token, DateTimeOffset ExpiresAt) Issue(ApiKey key, string? clientId, Capabilities capabilities, int ttlSeconds)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(capabilities);
        var credentials = signingKey.Credentials ?? throw new InvalidOperationException("this node has only the public signing key");
        var issuedAt = time.GetUtcNow().ToUnixTimeSeconds();
        var expires = issuedAt + ttlSeconds;
        using var cap = JsonDocument.Parse(capabilities.ToJson());
        var claims = new Dictionary<string, object>(7, StringComparer.Ordinal)
        {
            ["iss"] = TokenValidator.Issuer,
            ["app"] = key.AppId,
            ["key"] = key.Name,
            ["cap"] = cap.RootElement,
            ["iat"] = issuedAt,
            ["exp"] = expires,
        };
        if (clientId is not null)
        {
            claims["sub"] = clientId;
        }

        var token = _handler.CreateToken(new SecurityTokenDescriptor { Claims = claims, SigningCredentials = credentials });
        return (token, DateTimeOffset.FromUnixTimeSeconds(expires));
    }
}
