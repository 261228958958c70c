namespace Relay.Ingress.Mqtt.Codec;

/// <summary>SUBSCRIBE: a packet id and one or more topic filters.</summary>
internal sealed class MqttSubscribe() : MqttPacket(MqttPacketType.Subscribe)
{
    public ushort PacketId { get; set; }

    public MqttProperties? Properties { get; set; }

    public List<MqttSubscription> Subscriptions { get; } = [];
}
