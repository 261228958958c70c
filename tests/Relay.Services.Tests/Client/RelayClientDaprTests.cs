namespace Relay.Services.Tests.Client;

/// <summary><see cref="RelayClientSpec"/> over the Dapr bus, the stand-in delivering each message once, in order.</summary>
public sealed class RelayClientDaprTests(DaprBusServerFixture fixture) : RelayClientSpec(fixture), IClassFixture<DaprBusServerFixture>;

/// <summary><see cref="RelayClientSpec"/> over the Dapr bus, the stand-in posting every delivery twice and shuffling deliveries within 8.</summary>
public sealed class RelayClientDaprRedeliveringTests(DaprRedeliveringServerFixture fixture) : RelayClientSpec(fixture), IClassFixture<DaprRedeliveringServerFixture>;
