namespace Relay.Services.Tests.Http;

public sealed class ChannelsApiRedisClusterTests(RedisClusterBusServerFixture fixture) : ChannelsApiSpec(fixture), IClassFixture<RedisClusterBusServerFixture>;
