namespace Relay.Core.Protocol;

/// <summary>The error codes of the v1 wire protocol (spec "Error codes").</summary>
public static class ErrorCodes
{
    /// <summary>Bad request: malformed JSON, unknown <c>type</c>, missing field.</summary>
    public const int BadRequest = 40000;
    /// <summary>Invalid channel name or pattern.</summary>
    public const int InvalidChannel = 40002;
    /// <summary>No credentials were presented.</summary>
    public const int NoCredentials = 40101;
    /// <summary>Invalid key or token signature.</summary>
    public const int InvalidCredentials = 40102;
    /// <summary>The token has expired.</summary>
    public const int TokenExpired = 40142;
    /// <summary>The capability does not allow this operation on this channel.</summary>
    public const int Forbidden = 40300;
    /// <summary>Not found.</summary>
    public const int NotFound = 40400;
    /// <summary>Message larger than <c>maxMessageBytes</c>.</summary>
    public const int MessageTooLarge = 41300;
    /// <summary>A WebSocket upgrade asked for a protocol version the server does not speak (the answer names 13).</summary>
    public const int UpgradeRequired = 42600;
    /// <summary>Rate limit exceeded.</summary>
    public const int RateLimited = 42900;
    /// <summary>Internal error.</summary>
    public const int Internal = 50000;
    /// <summary>Unavailable: draining, overloaded or engine down.</summary>
    public const int Unavailable = 50300;
    /// <summary>Disconnected as a slow consumer.</summary>
    public const int SlowConsumer = 50301;

    /// <summary>The HTTP status that goes with a protocol error code (its first three digits).</summary>
    public static int HttpStatus(int code) => code / 100;
}
