namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// The MQTT spec on the bare socket with reads waiting in the runtime (<c>Relay:Ingress:ReadinessPoller=false</c>, and
/// where epoll is not there); the other spec classes wait in Relay's poller, the default on Linux.
/// </summary>
public sealed class MqttRuntimeWaitTests(RuntimeWaitServerFixture fixture) : MqttSpec(fixture), IClassFixture<RuntimeWaitServerFixture>;
