namespace Relay.Services.Tests.Realtime;

public sealed class PubSubDaprTests(DaprBusServerFixture fixture) : PubSubSpec(fixture), IClassFixture<DaprBusServerFixture>;

public sealed class PubSubDaprRedeliveringTests(DaprRedeliveringServerFixture fixture) : PubSubSpec(fixture), IClassFixture<DaprRedeliveringServerFixture>;
