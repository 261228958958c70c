namespace Relay.Services.Tests.Realtime;

[Collection(nameof(LimitsTests))]
public sealed class SendBudgetRedisTests(RedisBusFixture redis) : SendBudgetSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
