namespace Relay.Redis;

/// <summary>Where a connection is in its life.</summary>
public enum RedisConnectionState
{
    /// <summary>The first connect is under way.</summary>
    Connecting,

    /// <summary>Handshake done; commands go straight to the socket.</summary>
    Connected,

    /// <summary>The socket was lost; attempts run with backoff and commands wait (bounded by their timeout).</summary>
    Reconnecting,

    /// <summary>Disposed; commands fail with <see cref="ObjectDisposedException"/>.</summary>
    Disposed,
}

/// <summary>A change of <see cref="RedisConnectionState"/>, or a failed reconnect attempt (state stays Reconnecting).</summary>
public sealed class RedisConnectionStateChangedEventArgs(RedisConnectionState state, Exception? error, int attempt) : EventArgs
{
    /// <summary>The state now.</summary>
    public RedisConnectionState State { get; } = state;

    /// <summary>Why the connection was lost, or why the last attempt failed.</summary>
    public Exception? Error { get; } = error;

    /// <summary>Failed reconnect attempts so far (0 when the connection was just lost or is connected).</summary>
    public int Attempt { get; } = attempt;
}
