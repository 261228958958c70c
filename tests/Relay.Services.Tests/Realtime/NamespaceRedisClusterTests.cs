namespace Relay.Services.Tests.Realtime;

public sealed class NamespaceRedisClusterTests(RedisClusterBusFixture redis) : NamespaceSpec, IClassFixture<RedisClusterBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
