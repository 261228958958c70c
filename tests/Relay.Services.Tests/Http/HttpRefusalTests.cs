namespace Relay.Services.Tests.Http;

public sealed class HttpRefusalTests : HttpRefusalSpec;
