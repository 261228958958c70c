namespace Relay.Services.Tests.Realtime;

public sealed class KeyChangeRedisClusterTests(RedisClusterBusFixture redis) : KeyChangeRedisSpec(redis), IClassFixture<RedisClusterBusFixture>;
