namespace Relay.Services.Tests.Realtime;

public sealed class PubSubRedisClusterTests(RedisClusterBusServerFixture fixture) : PubSubSpec(fixture), IClassFixture<RedisClusterBusServerFixture>;
