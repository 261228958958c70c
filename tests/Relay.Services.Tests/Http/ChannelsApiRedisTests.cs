namespace Relay.Services.Tests.Http;

public sealed class ChannelsApiRedisTests(RedisBusServerFixture fixture) : ChannelsApiSpec(fixture), IClassFixture<RedisBusServerFixture>;
