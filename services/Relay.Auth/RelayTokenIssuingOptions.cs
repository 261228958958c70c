using Relay.Auth.Verification;

namespace Relay.Auth;

/// <summary>
/// The lifetimes of the tokens <c>POST /v1/tokens</c> issues, bound from <c>Relay:Auth</c> beside
/// <see cref="RelayAuthOptions"/> (what checking needs) and validated at start-up; only a process that issues uses them.
/// </summary>
public sealed class RelayTokenIssuingOptions
{
    /// <summary>The configuration section: the same as <see cref="RelayAuthOptions.SectionName"/>, so settings did not move.</summary>
    public const string SectionName = RelayAuthOptions.SectionName;

    /// <summary>A day: long enough for a session, short enough that a leaked token dies on its own.</summary>
    public const int DefaultMaxTokenTtlSeconds = 86_400;

    /// <summary>An hour: clients refresh well before this with an in-band <c>auth</c>.</summary>
    public const int DefaultDefaultTokenTtlSeconds = 3_600;

    /// <summary>The longest <c>ttlSeconds</c> that <c>POST /v1/tokens</c> grants.</summary>
    public int MaxTokenTtlSeconds { get; set; } = DefaultMaxTokenTtlSeconds;

    /// <summary>The lifetime of a token when the request names none.</summary>
    public int DefaultTokenTtlSeconds { get; set; } = DefaultDefaultTokenTtlSeconds;
}
