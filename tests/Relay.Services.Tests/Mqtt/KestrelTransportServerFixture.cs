using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// <see cref="ServerFixture"/>'s server with <c>Relay:Ingress:OwnTransport=false</c>: MQTT over TCP on Kestrel's socket
/// transport (the gated listener) instead of the bare socket the default serves it on.
/// </summary>
public sealed class KestrelTransportServerFixture : IServerFixture, IAsyncLifetime
{
    public RelayServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Ingress:OwnTransport"] = "false";
        Server = await RelayServer.StartAsync(settings);
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();
}
