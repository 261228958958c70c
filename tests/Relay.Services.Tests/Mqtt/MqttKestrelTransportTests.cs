using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// The MQTT spec with MQTT over TCP on Kestrel's socket transport (<c>Relay:Mqtt:OwnTransport=false</c>); the other
/// spec classes run it on the bare socket, the default.
/// </summary>
public sealed class MqttKestrelTransportTests(KestrelTransportServerFixture fixture) : MqttSpec(fixture), IClassFixture<KestrelTransportServerFixture>;

/// <summary><see cref="ServerFixture"/>'s server with <c>Relay:Mqtt:OwnTransport=false</c>: MQTT over TCP on Kestrel's socket transport.</summary>
public sealed class KestrelTransportServerFixture : IServerFixture, IAsyncLifetime
{
    public RelayServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:OwnTransport"] = "false";
        Server = await RelayServer.StartAsync(settings);
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();
}
