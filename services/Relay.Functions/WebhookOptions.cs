namespace Relay.Functions;

/// <summary>One webhook receiver.</summary>
public sealed class WebhookOptions
{
    /// <summary>The receiver's URL (<c>http://</c> or <c>https://</c>).</summary>
    public string? Url { get; set; }

    /// <summary>The HMAC-SHA256 key the body is signed with (at least 16 characters).</summary>
    public string? Secret { get; set; }

    /// <summary>Events sent: <c>channel.occupied</c>, <c>channel.vacated</c>, <c>presence</c>, <c>message</c>; empty: all four.</summary>
    public IList<string> Events { get; } = [];

    /// <summary>Only this app's events; unset: every app's.</summary>
    public string? App { get; set; }

    /// <summary>Only channels whose name starts with this; unset: every channel.</summary>
    public string? ChannelPrefix { get; set; }
}
