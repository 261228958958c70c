namespace Relay.Services.Tests.Realtime;

public sealed class AccessDaprTests(DaprBusServerFixture fixture) : AccessSpec(fixture), IClassFixture<DaprBusServerFixture>;
