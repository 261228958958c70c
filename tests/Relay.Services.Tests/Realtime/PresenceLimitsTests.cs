namespace Relay.Services.Tests.Realtime;

public sealed class PresenceLimitsTests : PresenceLimitsSpec;
