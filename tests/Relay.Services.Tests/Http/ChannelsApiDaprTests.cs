namespace Relay.Services.Tests.Http;

/// <summary><see cref="ChannelsApiSpec"/> over the Dapr bus, the stand-in delivering each message once, in order.</summary>
public sealed class ChannelsApiDaprTests(DaprBusServerFixture fixture) : ChannelsApiSpec(fixture), IClassFixture<DaprBusServerFixture>;

/// <summary><see cref="ChannelsApiSpec"/> over the Dapr bus, the stand-in posting every delivery twice and shuffling deliveries within 8.</summary>
public sealed class ChannelsApiDaprRedeliveringTests(DaprRedeliveringServerFixture fixture) : ChannelsApiSpec(fixture), IClassFixture<DaprRedeliveringServerFixture>;
