namespace Relay.Services.Tests.Realtime;

public sealed class PresenceRedisTests(RedisBusServerFixture fixture) : PresenceSpec(fixture), IClassFixture<RedisBusServerFixture>;
