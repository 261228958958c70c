namespace Relay.Services.Tests.WebSockets;

public sealed class FrameworkWebSocketTests : FrameworkWebSocketSpec;
