namespace Relay.Services.Tests.Http;

public sealed class ChannelsApiTests(ServerFixture fixture) : ChannelsApiSpec(fixture), IClassFixture<ServerFixture>;
