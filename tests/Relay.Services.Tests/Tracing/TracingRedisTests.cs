namespace Relay.Services.Tests.Tracing;

public sealed class TracingRedisTests(RedisBusFixture redis) : TracingSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
