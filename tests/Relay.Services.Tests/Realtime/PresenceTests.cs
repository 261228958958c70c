namespace Relay.Services.Tests.Realtime;

public sealed class PresenceTests(ServerFixture fixture) : PresenceSpec(fixture), IClassFixture<ServerFixture>;
