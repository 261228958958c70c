namespace Relay.Services.Tests.WebSockets;

public sealed class LeanWebSocketRedisTests(RedisBusFixture redis) : LeanWebSocketSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
