namespace Relay.Services.Tests.WebSockets;

public sealed class PipeWebSocketRedisTests(RedisBusFixture redis) : PipeWebSocketSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
