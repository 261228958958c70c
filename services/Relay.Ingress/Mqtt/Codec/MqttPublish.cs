using System.Buffers;

namespace Relay.Ingress.Mqtt.Codec;

/// <summary>
/// PUBLISH. A decoded one's <see cref="Payload"/> is a slice of the connection's input (not copied): it is valid until
/// the input is advanced past the packet, so whoever keeps it copies it first.
/// </summary>
internal sealed class MqttPublish() : MqttPacket(MqttPacketType.Publish)
{
    public string Topic { get; set; } = string.Empty;

    public byte Qos { get; set; }

    public bool Retain { get; set; }

    public bool Duplicate { get; set; }

    public ushort PacketId { get; set; }

    public MqttProperties? Properties { get; set; }

    public ReadOnlySequence<byte> Payload { get; set; }
}
