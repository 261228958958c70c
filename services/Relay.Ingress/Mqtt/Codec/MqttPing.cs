namespace Relay.Ingress.Mqtt.Codec;

/// <summary>PINGREQ or PINGRESP: a fixed header and nothing else, so one instance of each serves every connection.</summary>
internal sealed class MqttPing : MqttPacket
{
    public static readonly MqttPing Request = new(MqttPacketType.PingReq);

    public static readonly MqttPing Response = new(MqttPacketType.PingResp);

    private MqttPing(MqttPacketType type)
        : base(type)
    {
    }
}
