namespace Relay.Services.Tests.WebSockets;

/// <summary>Relay's own transport: upgrades taken at accept.</summary>
public sealed class WebSocketWireOwnTransportTests : WebSocketWireSpec
{
    protected override void Configure(IDictionary<string, string?> settings)
    {
    }
}
