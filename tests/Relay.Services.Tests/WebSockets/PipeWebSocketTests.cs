namespace Relay.Services.Tests.WebSockets;

public sealed class PipeWebSocketTests : PipeWebSocketSpec;
