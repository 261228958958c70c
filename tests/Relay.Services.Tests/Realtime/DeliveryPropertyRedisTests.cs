namespace Relay.Services.Tests.Realtime;

public sealed class DeliveryPropertyRedisTests(RedisBusFixture redis) : DeliveryPropertySpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
