using Microsoft.AspNetCore.Http;

namespace Relay.Auth;

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
}
