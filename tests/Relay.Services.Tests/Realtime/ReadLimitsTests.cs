namespace Relay.Services.Tests.Realtime;

public sealed class ReadLimitsTests : ReadLimitsSpec;
