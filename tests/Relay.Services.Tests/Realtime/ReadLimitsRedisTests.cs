namespace Relay.Services.Tests.Realtime;

public sealed class ReadLimitsRedisTests(RedisBusFixture redis) : ReadLimitsSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
