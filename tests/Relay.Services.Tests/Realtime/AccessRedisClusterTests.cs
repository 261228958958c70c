namespace Relay.Services.Tests.Realtime;

public sealed class AccessRedisClusterTests(RedisClusterBusServerFixture fixture) : AccessSpec(fixture), IClassFixture<RedisClusterBusServerFixture>;
