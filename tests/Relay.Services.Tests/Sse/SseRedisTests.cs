namespace Relay.Services.Tests.Sse;

public sealed class SseRedisTests(RedisBusFixture redis) : SseSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
