namespace Relay.Services.Tests.Realtime;

public sealed class ConnectDaprTests(DaprBusServerFixture fixture) : ConnectSpec(fixture), IClassFixture<DaprBusServerFixture>;
