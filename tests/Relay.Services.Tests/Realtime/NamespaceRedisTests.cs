namespace Relay.Services.Tests.Realtime;

public sealed class NamespaceRedisTests(RedisBusFixture redis) : NamespaceSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
