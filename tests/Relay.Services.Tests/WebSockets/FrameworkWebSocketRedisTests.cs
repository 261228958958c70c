namespace Relay.Services.Tests.WebSockets;

public sealed class FrameworkWebSocketRedisTests(RedisBusFixture redis) : FrameworkWebSocketSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
