namespace Relay.Services.Tests.WebSockets;

/// <summary>ASP.NET Core's WebSocket (Relay's own transport off): the framework's answers, which Relay's WebSocket matches.</summary>
public sealed class WebSocketWireFrameworkTests : WebSocketWireSpec
{
    protected override void Configure(IDictionary<string, string?> settings) => settings["Relay:Ingress:OwnTransport"] = "false";

    /// <summary>The framework's WebSocket fails the connection too (RFC 6455 §8.1), but says 1002 rather than 1007.</summary>
    protected override int InvalidUtf8CloseStatus => 1002;

    /// <summary>The framework fails a text message that is not UTF-8 itself, aborting the socket as it sends 1007.</summary>
    protected override bool InvalidTextMayEndInAReset => true;

    /// <summary>
    /// Kestrel closes the socket with the client's bytes unread, so the kernel resets the connection, and the reset can
    /// overtake the close frame (Relay's own transport reads them away first: docs/architecture.md, the end of a connection).
    /// </summary>
    protected override bool ProtocolErrorMayEndInAReset => true;
}
