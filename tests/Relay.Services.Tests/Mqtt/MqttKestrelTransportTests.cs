namespace Relay.Services.Tests.Mqtt;

/// <summary>The MQTT spec with MQTT over TCP on Kestrel's socket transport (<c>Relay:Ingress:OwnTransport=false</c>).</summary>
public sealed class MqttKestrelTransportTests(KestrelTransportServerFixture fixture) : MqttSpec(fixture), IClassFixture<KestrelTransportServerFixture>;
