using Microsoft.Extensions.Logging;

namespace Relay.Auth.Http;

internal static partial class TokensApi
{
    [LoggerMessage(EventId = 3001, EventName = "TokenIssued", Level = LogLevel.Debug, Message = "Issued a token for key {Key}, client {ClientId}, expiring at {ExpiresAt:O}")]
    private static partial void LogIssued(ILogger logger, string key, string? clientId, DateTimeOffset expiresAt);

    [LoggerMessage(EventId = 3002, EventName = "TokenRequestRefused", Level = LogLevel.Debug, Message = "Token request refused with {Code}: {Reason}")]
    private static partial void LogRefused(ILogger logger, int code, string reason);
}
