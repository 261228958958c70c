using Microsoft.Extensions.Logging;

namespace Relay.Auth.Verification;

internal sealed partial class RelayAuthStartup
{
    [LoggerMessage(EventId = 1001, EventName = "NoApps", Level = LogLevel.Warning,
        Message = "Relay:Auth has no apps, so every key and token will be refused (40102); add one under Relay:Auth:Apps")]
    private static partial void LogNoApps(ILogger logger);

    [LoggerMessage(EventId = 1002, EventName = "KeysLoaded", Level = LogLevel.Information, Message = "Loaded {AppCount} apps with {KeyCount} keys")]
    private static partial void LogKeysLoaded(ILogger logger, int appCount, int keyCount);

    [LoggerMessage(EventId = 1003, EventName = "SigningKeyGenerated", Level = LogLevel.Warning,
        Message = "Relay:Auth:SigningKeyPath is not set: generated ES256 signing key {KeyId}; tokens issued by this process will not verify after a restart or on other nodes")]
    private static partial void LogSigningKeyGenerated(ILogger logger, string keyId);

    [LoggerMessage(EventId = 1004, EventName = "SigningKeyLoaded", Level = LogLevel.Information, Message = "Loaded ES256 signing key {KeyId} from {Path}")]
    private static partial void LogSigningKeyLoaded(ILogger logger, string keyId, string? path);

    [LoggerMessage(EventId = 1005, EventName = "VerifyOnly", Level = LogLevel.Information,
        Message = "{Path} holds only the public key {KeyId}: this node verifies Relay's tokens but does not issue them")]
    private static partial void LogVerifyOnly(ILogger logger, string keyId, string? path);
}
