namespace Relay.Auth.Verification;

/// <summary>A key of an app: <c>APPID.KEYID:SECRET</c> and what it may do.</summary>
public sealed class RelayKeyOptions
{
    /// <summary>The key id: 1-64 characters of <c>[A-Za-z0-9_-]</c>.</summary>
    public string Id { get; set; } = string.Empty;

    /// <summary>The secret, 16 characters or more (it is also the HS256 key of the customer's own tokens).</summary>
    public string Secret { get; set; } = string.Empty;

    /// <summary>The capabilities: a list because configuration keys cannot hold the <c>:</c> of globs like <c>chat:*</c>.</summary>
    public IList<RelayCapabilityOptions> Capabilities { get; } = [];
}
