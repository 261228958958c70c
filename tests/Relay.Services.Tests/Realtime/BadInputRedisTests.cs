namespace Relay.Services.Tests.Realtime;

public sealed class BadInputRedisTests(RedisBusServerFixture fixture) : BadInputSpec(fixture), IClassFixture<RedisBusServerFixture>;
