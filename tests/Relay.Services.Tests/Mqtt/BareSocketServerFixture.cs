using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// <see cref="ServerFixture"/>'s server with <c>Relay:Mqtt:OwnTransport=true</c> said outright (it is the default): MQTT
/// over TCP on the bare socket (Relay's own transport), for the tests that are about that transport.
/// </summary>
public sealed class BareSocketServerFixture : IServerFixture, IAsyncLifetime
{
    public RelayServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:OwnTransport"] = "true";
        Server = await RelayServer.StartAsync(settings);
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();
}
