namespace Relay.Services.Tests.Mqtt;

public sealed class MqttTests(ServerFixture fixture) : MqttSpec(fixture), IClassFixture<ServerFixture>;
