namespace Relay.Core.Protocol;

/// <summary>A protocol error: one of <see cref="ErrorCodes"/> and a message a user can act on.</summary>
public sealed record RelayError(int Code, string Message)
{
    /// <summary>The HTTP status for this error.</summary>
    public int StatusCode => ErrorCodes.HttpStatus(Code);

    /// <summary>Builds a 40000 bad-request error.</summary>
    public static RelayError BadRequest(string message) => new(ErrorCodes.BadRequest, message);

    /// <summary>Builds a 40300 capability error for an operation on a channel.</summary>
    public static RelayError Forbidden(string operation, string channel) =>
        new(ErrorCodes.Forbidden, $"the credentials do not allow '{operation}' on channel '{channel}'");
}
