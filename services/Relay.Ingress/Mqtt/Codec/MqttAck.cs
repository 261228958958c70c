namespace Relay.Ingress.Mqtt.Codec;

/// <summary>PUBACK, PUBREC, PUBREL or PUBCOMP: a packet id, and in MQTT 5 a reason code and properties.</summary>
internal sealed class MqttAck(MqttPacketType type) : MqttPacket(type)
{
    public ushort PacketId { get; set; }

    public byte ReasonCode { get; set; }

    public MqttProperties? Properties { get; set; }
}
