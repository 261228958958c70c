using Microsoft.Extensions.Logging;

namespace Relay.Auth.Verification;

internal sealed partial class RelayAuthenticator
{
    // Debug and at most LogRateLimit.PerSecond a second: a refused credential is the client's problem, and a flood of
    // them must not flood the logs. The reason may say more than the client was told (which key, unknown or wrong secret).
    [LoggerMessage(EventId = 2001, EventName = "AuthenticationFailed", Level = LogLevel.Debug, Message = "Authentication failed with {Code}: {Reason}")]
    private static partial void LogFailure(ILogger logger, int code, string reason);
}
