namespace Relay.Services.Tests.Realtime;

public sealed class BadInputRedisClusterTests(RedisClusterBusServerFixture fixture) : BadInputSpec(fixture), IClassFixture<RedisClusterBusServerFixture>;
