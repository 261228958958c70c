using Microsoft.AspNetCore.Http;

namespace Relay.Auth.Verification;

/// <summary>Checks credentials locally (no call per message): keys from configuration, Relay-issued ES256 tokens, customer HS256 tokens.</summary>
public interface IRelayAuthenticator
{
    /// <summary>
    /// Reads the credentials of a request: <c>Authorization: Basic</c> (key) or <c>Bearer</c> (token),
    /// else <c>?key=</c> (with optional <c>?clientId=</c>) or <c>?token=</c>. No credentials gives 40101.
    /// </summary>
    AuthResult Authenticate(HttpContext context);

    /// <summary>Checks a token (a JWT) on its own, as sent in an in-band <c>auth</c> request.</summary>
    AuthResult AuthenticateToken(string token);

    /// <summary>
    /// A number that moves whenever keys are added, removed or changed (not when the same keys are loaded again): a
    /// connection checked against one version need not be checked again until it moves.
    /// </summary>
    long KeysVersion { get; }

    /// <summary>
    /// Checks a principal again against the keys as they are now: the same principal when its key has not changed; one with
    /// the key's new capabilities (a token's clipped to them) when they changed; 40102 when the key was removed, or when the
    /// credentials were the key itself or an HS256 token and its secret changed. Relay's own tokens outlive a secret change.
    /// </summary>
    AuthResult Recheck(RelayPrincipal principal);
}
