namespace Relay.Services.Tests.Realtime;

public sealed class PubSubTests(ServerFixture fixture) : PubSubSpec(fixture), IClassFixture<ServerFixture>;
