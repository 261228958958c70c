namespace Relay.Services.Tests.Realtime;

public sealed class KeyChangeRedisTests(RedisBusFixture redis) : KeyChangeRedisSpec(redis), IClassFixture<RedisBusFixture>;
