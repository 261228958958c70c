namespace Relay.Ingress.Mqtt.Codec;

/// <summary>CONNACK: <see cref="ReasonCode"/> is the 3.1.1 return code or the 5.0 reason code.</summary>
internal sealed class MqttConnAck() : MqttPacket(MqttPacketType.ConnAck)
{
    public bool SessionPresent { get; set; }

    public byte ReasonCode { get; set; }

    public MqttProperties? Properties { get; set; }
}
