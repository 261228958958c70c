namespace Relay.Services.Tests.Realtime;

public sealed class PresenceRedisClusterTests(RedisClusterBusServerFixture fixture) : PresenceSpec(fixture), IClassFixture<RedisClusterBusServerFixture>;
