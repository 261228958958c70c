namespace Relay.Services.Tests.WebSockets;

/// <summary>The connection middleware on Kestrel's connections.</summary>
public sealed class WebSocketWireMiddlewareTests : WebSocketWireSpec
{
    protected override void Configure(IDictionary<string, string?> settings) => settings["Relay:Ingress:OwnTransport"] = "false";
}
