namespace Relay.Services.Tests.Realtime;

public sealed class PresenceDaprTests(DaprBusServerFixture fixture) : PresenceSpec(fixture), IClassFixture<DaprBusServerFixture>;

public sealed class PresenceDaprRedeliveringTests(DaprRedeliveringServerFixture fixture) : PresenceSpec(fixture), IClassFixture<DaprRedeliveringServerFixture>;
