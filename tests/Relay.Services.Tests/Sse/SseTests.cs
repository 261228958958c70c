namespace Relay.Services.Tests.Sse;

public sealed class SseTests : SseSpec;
