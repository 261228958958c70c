namespace Relay.Services.Tests.Realtime;

public sealed class DeliveryPropertyRedisClusterTests(RedisClusterBusFixture redis) : DeliveryPropertySpec, IClassFixture<RedisClusterBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
