namespace Relay.Redis.Internal;

/// <summary>What went wrong, as the <c>kind</c> tag of <c>relay.redis.errors</c> (see <see cref="RedisMetrics.ErrorKindNames"/>).</summary>
internal enum RedisErrorKind
{
    /// <summary>Redis answered with an error reply (WRONGTYPE, NOSCRIPT, a refused SUBSCRIBE, …).</summary>
    ErrorReply,

    /// <summary>No reply (or SUBSCRIBE confirmation) in time, or no reconnect within a waiting command's timeout.</summary>
    Timeout,

    /// <summary>An established socket failed or was closed by the server.</summary>
    ConnectionLost,

    /// <summary>A connect or reconnect attempt failed (socket, TLS or handshake).</summary>
    ConnectFailed,

    /// <summary>The server sent bytes that are not RESP, or a reply nothing waited for.</summary>
    Protocol,
}
