namespace Relay.Services.Tests.Realtime;

public sealed class AccessRedisTests(RedisBusServerFixture fixture) : AccessSpec(fixture), IClassFixture<RedisBusServerFixture>;
