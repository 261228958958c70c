namespace Relay.Ingress.Mqtt.Codec;

/// <summary>DISCONNECT, or (MQTT 5) AUTH: a reason code and properties, both optional on the wire.</summary>
internal sealed class MqttDisconnect(MqttPacketType type) : MqttPacket(type)
{
    public MqttDisconnect()
        : this(MqttPacketType.Disconnect)
    {
    }

    public byte ReasonCode { get; set; }

    public MqttProperties? Properties { get; set; }
}
