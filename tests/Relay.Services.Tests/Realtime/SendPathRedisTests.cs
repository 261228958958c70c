namespace Relay.Services.Tests.Realtime;

[Collection(nameof(SendPathTests))]
public sealed class SendPathRedisTests(RedisBusFixture redis) : SendPathSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
