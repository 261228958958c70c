namespace Relay.Services.Tests.Client;

public sealed class RelayClientTests(ServerFixture fixture) : RelayClientSpec(fixture), IClassFixture<ServerFixture>;
