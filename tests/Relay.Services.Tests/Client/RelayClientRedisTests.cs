namespace Relay.Services.Tests.Client;

public sealed class RelayClientRedisTests(RedisBusServerFixture fixture) : RelayClientSpec(fixture), IClassFixture<RedisBusServerFixture>;
