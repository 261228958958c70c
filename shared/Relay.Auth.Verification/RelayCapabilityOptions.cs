namespace Relay.Auth.Verification;

/// <summary>One capability of a key: a channel glob and the operations it grants there.</summary>
public sealed class RelayCapabilityOptions
{
    /// <summary>The channel glob (<c>*</c> matches any run of characters): <c>chat:*</c>, <c>*</c>.</summary>
    public string Channel { get; set; } = string.Empty;

    /// <summary>Operations out of <c>subscribe</c>, <c>publish</c>, <c>presence</c>, <c>history</c>, or <c>*</c> for all.</summary>
    public IList<string> Operations { get; } = [];
}
