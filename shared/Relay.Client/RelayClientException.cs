namespace Relay.Client;

/// <summary>An error from the Relay server (an <c>error</c> reply, a refused connection or a <c>disconnect</c>), or a lost connection.</summary>
public sealed class RelayClientException : Exception
{
    /// <summary>The code the client uses when the connection was lost before the server replied (the spec's "unavailable").</summary>
    public const int ConnectionLost = 50300;

    /// <summary>Creates an exception with an empty message and code 50000.</summary>
    public RelayClientException()
        : this(50000, "Relay error")
    {
    }

    /// <summary>Creates an exception with code 50000.</summary>
    /// <param name="message">The message.</param>
    public RelayClientException(string message)
        : this(50000, message)
    {
    }

    /// <summary>Creates an exception with code 50000 and an inner exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public RelayClientException(string message, Exception innerException)
        : this(50000, message, innerException)
    {
    }

    /// <summary>Creates an exception for a protocol error code.</summary>
    /// <param name="code">The protocol error code, e.g. 40300.</param>
    /// <param name="message">The server's message.</param>
    /// <param name="innerException">The cause, if any.</param>
    public RelayClientException(int code, string message, Exception? innerException = null)
        : base(message, innerException) => Code = code;

    /// <summary>The protocol error code (e.g. 40300 forbidden, 40142 token expired, 50301 slow consumer); its first three digits are the HTTP status.</summary>
    public int Code { get; }

    /// <summary>The HTTP status that goes with <see cref="Code"/>.</summary>
    public int StatusCode => Code / 100;

    /// <inheritdoc />
    public override string ToString() => $"{nameof(RelayClientException)} {Code}: {base.ToString()}";
}
