namespace Relay.Auth.Verification;

/// <summary>What a principal proved itself with.</summary>
public enum RelayCredentialKind
{
    /// <summary>A key and its secret (Basic auth or <c>?key=</c>).</summary>
    Key,

    /// <summary>A token (a JWT: Relay's ES256 or a customer's HS256), by Bearer, <c>?token=</c> or an in-band <c>auth</c>.</summary>
    Token,
}
