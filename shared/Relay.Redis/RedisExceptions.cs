namespace Relay.Redis;

/// <summary>The base of the client's own exceptions (timeouts are <see cref="TimeoutException"/>).</summary>
public class RedisException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RedisException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public RedisException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public RedisException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>Redis answered a command with an error reply.</summary>
public sealed class RedisServerException : RedisException
{
    /// <summary>Creates the exception.</summary>
    public RedisServerException()
    {
        Command = string.Empty;
        ServerMessage = string.Empty;
    }

    /// <summary>Creates the exception.</summary>
    public RedisServerException(string message)
        : base(message)
    {
        Command = string.Empty;
        ServerMessage = message;
    }

    /// <summary>Creates the exception.</summary>
    public RedisServerException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Command = string.Empty;
        ServerMessage = message;
    }

    /// <summary>Creates the exception for <paramref name="command"/>'s error reply <paramref name="serverMessage"/>.</summary>
    public RedisServerException(string command, string serverMessage, Exception? innerException)
        : base($"Redis answered {command} with an error: {serverMessage}", innerException)
    {
        Command = command;
        ServerMessage = serverMessage;
    }

    /// <summary>The command that failed.</summary>
    public string Command { get; }

    /// <summary>The error reply as Redis sent it (<c>NOSCRIPT No matching script...</c>).</summary>
    public string ServerMessage { get; }

    /// <summary>The error's first word (<c>ERR</c>, <c>NOSCRIPT</c>, <c>WRONGPASS</c>, <c>WRONGTYPE</c>).</summary>
    public string ErrorCode => ServerMessage.Split(' ', 2)[0];
}

/// <summary>The connection could not be made, or was lost before a reply arrived.</summary>
public sealed class RedisConnectionException : RedisException
{
    /// <summary>Creates the exception.</summary>
    public RedisConnectionException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public RedisConnectionException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public RedisConnectionException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The server sent bytes that are not RESP; the connection is dropped.</summary>
public sealed class RedisProtocolException : RedisException
{
    /// <summary>Creates the exception.</summary>
    public RedisProtocolException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public RedisProtocolException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public RedisProtocolException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
