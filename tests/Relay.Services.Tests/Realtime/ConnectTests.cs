namespace Relay.Services.Tests.Realtime;

public sealed class ConnectTests(ServerFixture fixture) : ConnectSpec(fixture), IClassFixture<ServerFixture>;
