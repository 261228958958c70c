namespace Relay.Services.Tests.Http;

public sealed class HttpRefusalRedisClusterTests(RedisClusterBusFixture redis) : HttpRefusalSpec, IClassFixture<RedisClusterBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
