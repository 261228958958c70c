namespace Relay.Services.Tests.Http;

public sealed class HttpRefusalRedisTests(RedisBusFixture redis) : HttpRefusalSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
