namespace Relay.Services.Tests.WebSockets;

/// <summary>Relay's own transport on the Redis bus.</summary>
public sealed class WebSocketWireRedisTests(RedisBusFixture redis) : WebSocketWireSpec, IClassFixture<RedisBusFixture>
{
    protected override void Configure(IDictionary<string, string?> settings) => redis.AddTo(settings);
}
