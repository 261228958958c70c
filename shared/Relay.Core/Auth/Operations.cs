namespace Relay.Core.Auth;

/// <summary>The operations a capability can grant on a channel.</summary>
[Flags]
public enum Operations
{
    /// <summary>Nothing.</summary>
    None = 0,
    /// <summary>Receive messages, and recover those missed with <c>since</c> (<c>rewind</c> also needs <see cref="History"/>).</summary>
    Subscribe = 1,
    /// <summary>Publish messages.</summary>
    Publish = 2,
    /// <summary>Enter, update, leave and read presence.</summary>
    Presence = 4,
    /// <summary>Read history.</summary>
    History = 8,
    /// <summary>Every operation.</summary>
    All = Subscribe | Publish | Presence | History,
}
