namespace Relay.Services.Tests.Sse;

public sealed class SseRedisClusterTests(RedisClusterBusFixture redis) : SseSpec, IClassFixture<RedisClusterBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
