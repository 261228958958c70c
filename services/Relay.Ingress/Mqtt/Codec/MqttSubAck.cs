namespace Relay.Ingress.Mqtt.Codec;

/// <summary>SUBACK (one return or reason code per filter) or, in MQTT 5, UNSUBACK (one reason code per filter).</summary>
internal sealed class MqttSubAck(MqttPacketType type) : MqttPacket(type)
{
    public MqttSubAck()
        : this(MqttPacketType.SubAck)
    {
    }

    public ushort PacketId { get; set; }

    public MqttProperties? Properties { get; set; }

    public List<byte> ReasonCodes { get; } = [];
}
