namespace Relay.Services.Tests.Client;

public sealed class RelayClientRedisClusterTests(RedisClusterBusServerFixture fixture) : RelayClientSpec(fixture), IClassFixture<RedisClusterBusServerFixture>;
