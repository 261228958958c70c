namespace Relay.Services.Tests.Realtime;

public sealed class BadInputTests(ServerFixture fixture) : BadInputSpec(fixture), IClassFixture<ServerFixture>;
