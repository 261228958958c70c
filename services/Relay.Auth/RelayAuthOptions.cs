namespace Relay.Auth;

/// <summary>Apps, keys and token settings, bound from <c>Relay:Auth</c> and validated at start-up.</summary>
public sealed class RelayAuthOptions
{
    /// <summary>The configuration section.</summary>
    public const string SectionName = "Relay:Auth";

    /// <summary>A day: long enough for a session, short enough that a leaked token dies on its own.</summary>
    public const int DefaultMaxTokenTtlSeconds = 86_400;

    /// <summary>An hour: clients refresh well before this with an in-band <c>auth</c>.</summary>
    public const int DefaultDefaultTokenTtlSeconds = 3_600;

    /// <summary>Thirty seconds: covers ordinary NTP drift between a customer's backend and Relay.</summary>
    public const int DefaultClockSkewSeconds = 30;

    /// <summary>The apps (tenants) and their keys.</summary>
    public IList<RelayAppOptions> Apps { get; } = [];

    /// <summary>The longest <c>ttlSeconds</c> that <c>POST /v1/tokens</c> grants.</summary>
    public int MaxTokenTtlSeconds { get; set; } = DefaultMaxTokenTtlSeconds;

    /// <summary>The lifetime of a token when the request names none.</summary>
    public int DefaultTokenTtlSeconds { get; set; } = DefaultDefaultTokenTtlSeconds;

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
