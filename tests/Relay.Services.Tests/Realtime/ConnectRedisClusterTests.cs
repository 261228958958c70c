namespace Relay.Services.Tests.Realtime;

public sealed class ConnectRedisClusterTests(RedisClusterBusServerFixture fixture) : ConnectSpec(fixture), IClassFixture<RedisClusterBusServerFixture>;
