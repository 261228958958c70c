namespace Relay.Services.Tests.Realtime;

[Collection(nameof(LimitsTests))]
public sealed class LimitsRedisTests(RedisBusFixture redis) : LimitsSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
