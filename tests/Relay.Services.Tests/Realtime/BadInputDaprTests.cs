namespace Relay.Services.Tests.Realtime;

public sealed class BadInputDaprTests(DaprBusServerFixture fixture) : BadInputSpec(fixture), IClassFixture<DaprBusServerFixture>;
