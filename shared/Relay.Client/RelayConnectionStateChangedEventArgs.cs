namespace Relay.Client;

/// <summary>A change of <see cref="RelayClient.State"/>.</summary>
/// <param name="previous">The state before.</param>
/// <param name="current">The state now.</param>
/// <param name="error">Why the connection dropped or closed, when the server said (or a transport error was seen).</param>
public sealed class RelayConnectionStateChangedEventArgs(RelayConnectionState previous, RelayConnectionState current, Exception? error) : EventArgs
{
    /// <summary>The state before.</summary>
    public RelayConnectionState Previous { get; } = previous;

    /// <summary>The state now.</summary>
    public RelayConnectionState Current { get; } = current;

    /// <summary>Why the connection dropped or closed, if known: a <see cref="RelayClientException"/> for a server <c>disconnect</c> or refusal.</summary>
    public Exception? Error { get; } = error;
}
