namespace Relay.Services.Tests.Realtime;

public sealed class PresenceLimitsRedisClusterTests(RedisClusterBusFixture redis) : PresenceLimitsSpec, IClassFixture<RedisClusterBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
