namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// The MQTT spec with MQTT over TCP on Kestrel's socket transport (<c>Relay:Mqtt:OwnTransport=false</c>); the other
/// spec classes run it on the bare socket, the default.
/// </summary>
public sealed class MqttKestrelTransportTests(KestrelTransportServerFixture fixture) : MqttSpec(fixture), IClassFixture<KestrelTransportServerFixture>;
