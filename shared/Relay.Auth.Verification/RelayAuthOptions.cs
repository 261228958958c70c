namespace Relay.Auth.Verification;

/// <summary>
/// What checking credentials needs (apps and keys, where they come from, the signing key, clock skew), bound from
/// <c>Relay:Auth</c> and validated at start-up. Token lifetimes, which only issuing needs, are <see cref="RelayTokenIssuingOptions"/>.
/// </summary>
public sealed class RelayAuthOptions
{
    /// <summary>The configuration section.</summary>
    public const string SectionName = "Relay:Auth";

    /// <summary>Thirty seconds: covers ordinary NTP drift between a customer's backend and Relay.</summary>
    public const int DefaultClockSkewSeconds = 30;

    /// <summary>The apps (tenants) and their keys.</summary>
    public IList<RelayAppOptions> Apps { get; } = [];

    /// <summary>Tolerance when checking a token's <c>exp</c> and <c>nbf</c>.</summary>
    public int ClockSkewSeconds { get; set; } = DefaultClockSkewSeconds;

    /// <summary>
    /// A PEM file with the EC P-256 private key that signs Relay's tokens; a public key alone makes a node that verifies
    /// but does not issue. When null, a key is generated at start and its tokens die with the process.
    /// </summary>
    public string? SigningKeyPath { get; set; }

    /// <summary>
    /// Where this process gets apps and keys: <c>configuration</c> (default: <see cref="Apps"/>) or <c>redis</c> (what the
    /// auth service published there; for ingress nodes in distributed mode, so keys live in one place and revocation
    /// reaches every node within seconds). A process with keys from configuration and <c>Relay:Bus=redis</c> publishes them.
    /// </summary>
    public string KeySource { get; set; } = "configuration";
}
