namespace Relay.Services.Tests.Realtime;

[Collection(nameof(SendPathTests))]
public sealed class SendPathTests : SendPathSpec;
