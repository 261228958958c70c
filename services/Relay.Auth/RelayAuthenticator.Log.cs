using Microsoft.Extensions.Logging;

namespace Relay.Auth;

internal sealed partial class RelayAuthenticator
{
    // Debug: a refused credential is the client's problem, and a flood of them must not flood the logs.
    [LoggerMessage(EventId = 2001, EventName = "AuthenticationFailed", Level = LogLevel.Debug, Message = "Authentication failed with {Code}: {Reason}")]
    private static partial void LogFailure(ILogger logger, int code, string reason);
}
