namespace Relay.Auth.Verification;

/// <summary>An app (tenant) and its keys.</summary>
public sealed class RelayAppOptions
{
    /// <summary>The app id: 1-64 characters of <c>[A-Za-z0-9_-]</c>.</summary>
    public string Id { get; set; } = string.Empty;

    /// <summary>The app's keys.</summary>
    public IList<RelayKeyOptions> Keys { get; } = [];
}
