namespace Relay.Core.Protocol;

/// <summary>The client request types of the v1 protocol.</summary>
public enum RequestType
{
    /// <summary>Not one the protocol defines.</summary>
    Unknown,
    /// <summary><c>subscribe</c>.</summary>
    Subscribe,
    /// <summary><c>unsubscribe</c>.</summary>
    Unsubscribe,
    /// <summary><c>publish</c>.</summary>
    Publish,
    /// <summary><c>presence</c>.</summary>
    Presence,
    /// <summary><c>history</c>.</summary>
    History,
    /// <summary><c>auth</c>.</summary>
    Auth,
    /// <summary><c>ping</c>.</summary>
    Ping,
}
