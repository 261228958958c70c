namespace Relay.Services.Tests.Tracing;

public sealed class TracingTests : TracingSpec;
