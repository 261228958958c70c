using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// <see cref="ServerFixture"/>'s server with MQTT over TCP on the transport named: the bare socket (Relay's own transport,
/// <c>Relay:Mqtt:OwnTransport=true</c>, the default, said outright for the tests about it) or Kestrel's socket transport.
/// </summary>
public abstract class MqttTransportServerFixture(bool bareSocket, bool poller = true) : IServerFixture, IAsyncLifetime
{
    public RelayServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:OwnTransport"] = bareSocket ? "true" : "false";
        settings["Relay:Ingress:ReadinessPoller"] = poller ? "true" : "false";
        Server = await RelayServer.StartAsync(settings);
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>MQTT over TCP on the bare socket (<c>Relay:Mqtt:OwnTransport=true</c>).</summary>
public sealed class BareSocketServerFixture() : MqttTransportServerFixture(bareSocket: true);

/// <summary>MQTT over TCP on Kestrel's socket transport (<c>Relay:Mqtt:OwnTransport=false</c>).</summary>
public sealed class KestrelTransportServerFixture() : MqttTransportServerFixture(bareSocket: false);

/// <summary>MQTT over TCP on the bare socket, its reads waiting with the runtime's zero-byte receive (<c>Relay:Ingress:ReadinessPoller=false</c>).</summary>
public sealed class RuntimeWaitServerFixture() : MqttTransportServerFixture(bareSocket: true, poller: false);
