namespace Relay.Ingress.Mqtt.Codec;

/// <summary>UNSUBSCRIBE: a packet id and one or more topic filters.</summary>
internal sealed class MqttUnsubscribe() : MqttPacket(MqttPacketType.Unsubscribe)
{
    public ushort PacketId { get; set; }

    public MqttProperties? Properties { get; set; }

    public List<string> Filters { get; } = [];
}
