namespace Relay.Ingress.Mqtt.Codec;

/// <summary>A decoded MQTT control packet (or one to encode).</summary>
internal abstract class MqttPacket(MqttPacketType type)
{
    public MqttPacketType Type { get; } = type;
}
