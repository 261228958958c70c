namespace Relay.Services.Tests.Mqtt;

public sealed class MqttRedisTests(RedisBusServerFixture fixture) : MqttSpec(fixture), IClassFixture<RedisBusServerFixture>;
