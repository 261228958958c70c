using Relay.Bus.Routing;

namespace Relay.Ingress.Mqtt;

/// <summary>A connection's last will, ready to publish: the publish request, and whether it is also kept as retained.</summary>
internal sealed record MqttWill(PublishRequest Request, bool Retain);
