namespace Relay.Services.Tests.Realtime;

public sealed class ReadLimitsRedisClusterTests(RedisClusterBusFixture redis) : ReadLimitsSpec, IClassFixture<RedisClusterBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
