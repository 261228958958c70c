namespace Relay.Client;

/// <summary>Where a <see cref="RelayClient"/>'s connection is.</summary>
public enum RelayConnectionState
{
    /// <summary>Opening the first connection.</summary>
    Connecting,

    /// <summary>Connected: requests go out at once.</summary>
    Connected,

    /// <summary>The connection dropped; the client is waiting out its backoff or reconnecting. Requests wait for the connection (up to their timeout).</summary>
    Reconnecting,

    /// <summary>Closed for good: disposed, or the server refused to let the client back (see <see cref="RelayConnectionStateChangedEventArgs.Error"/>).</summary>
    Closed,
}
