namespace Relay.Services.Tests.Realtime;

public sealed class ConnectRedisTests(RedisBusServerFixture fixture) : ConnectSpec(fixture), IClassFixture<RedisBusServerFixture>;
