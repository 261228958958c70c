namespace Relay.Services.Tests.Realtime;

public sealed class PresenceLimitsRedisTests(RedisBusFixture redis) : PresenceLimitsSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
