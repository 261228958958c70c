namespace Relay.Services.Tests.Mqtt;

/// <summary>The MQTT spec with MQTT over TCP on the bare socket (<c>Relay:Mqtt:OwnTransport=true</c>).</summary>
public sealed class MqttBareSocketTests(BareSocketServerFixture fixture) : MqttSpec(fixture), IClassFixture<BareSocketServerFixture>;
