namespace Relay.Services.Tests.WebSockets;

public sealed class LeanWebSocketTests : LeanWebSocketSpec;
