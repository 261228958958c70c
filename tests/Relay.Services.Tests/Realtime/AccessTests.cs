namespace Relay.Services.Tests.Realtime;

public sealed class AccessTests(ServerFixture fixture) : AccessSpec(fixture), IClassFixture<ServerFixture>;
