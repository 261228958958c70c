namespace Relay.Services.Tests.Realtime;

public sealed class PubSubRedisTests(RedisBusServerFixture fixture) : PubSubSpec(fixture), IClassFixture<RedisBusServerFixture>;
