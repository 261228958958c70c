using Relay.Auth.Verification.Keys;
using Relay.Core.Auth;

namespace Relay.Auth.Verification;

/// <summary>Who a request or connection is: the app, the key behind it, the client id and what it may do.</summary>
/// <param name="AppId">The app (tenant) every channel of this principal belongs to.</param>
/// <param name="KeyId">The key that signed or presented the credentials.</param>
/// <param name="ClientId">The client id (token <c>sub</c> or <c>?clientId=</c> with a key); null when none was given.</param>
/// <param name="Capabilities">The effective capabilities (a token's are already clipped to its key's).</param>
/// <param name="ExpiresAt">When a token expires; null for key auth.</param>
/// <param name="Credential">Whether the credentials were the key itself or a token.</param>
public sealed record RelayPrincipal(string AppId, string KeyId, string? ClientId, Capabilities Capabilities, DateTimeOffset? ExpiresAt, RelayCredentialKind Credential)
{
    /// <summary>The key behind the credentials, for <see cref="IRelayAuthenticator.Recheck"/>; null when none was checked.</summary>
    internal KeyGrant? Grant { get; init; }
}
