using Relay.Core.Messages;
using Relay.Ingress.Mqtt.Codec;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// One item of an MQTT connection's send queue: a message to deliver at a QoS (<paramref name="Retain"/>: a retained
/// message sent for a new subscription, with the RETAIN flag), or a control packet's bytes. A resumed session's delivery
/// sent again carries its <paramref name="PacketId"/> (sent with DUP), or <paramref name="Release"/> for a QoS 2 one to
/// be released again (PUBREL). A shared subscription's delivery names its member (<paramref name="Shared"/>), so what
/// the member does not acknowledge goes to another member of the group.
/// </summary>
internal readonly record struct MqttOutbound(RelayMessage? Message, byte[]? Frame, byte Qos, bool Retain = false, ushort PacketId = 0, bool Release = false, MqttSubscriptionSink? Shared = null, MqttPacketType AckType = 0, byte AckReason = 0)
{
    /// <summary>
    /// The frame of an acknowledgement (<see cref="Acknowledgement"/>): never written itself (its length is the item's
    /// share of the send budget); the packet is written from the item's fields.
    /// </summary>
    private static readonly byte[] AcknowledgementFrame = new byte[4];

    /// <summary>Whether this item is a PUBACK, PUBREC, PUBREL or PUBCOMP without properties (<see cref="Acknowledgement"/>).</summary>
    public bool IsAcknowledgement => ReferenceEquals(Frame, AcknowledgementFrame);

    /// <summary>
    /// A PUBACK, PUBREC, PUBREL or PUBCOMP for <paramref name="packetId"/> with <paramref name="reason"/> (MQTT 5; 0 on
    /// 3.1.1) and no properties, as an item of no allocation: one per QoS 1 or 2 publish a client sends, where an
    /// encoded packet cost its object, a writer and an array (~200 B).
    /// </summary>
    public static MqttOutbound Acknowledgement(MqttPacketType type, ushort packetId, byte reason) =>
        new(null, AcknowledgementFrame, 0, PacketId: packetId, AckType: type, AckReason: reason);

    /// <summary>PINGRESP, the same two bytes on both versions: encoded once, not at every keep-alive of every connection.</summary>
    public static readonly byte[] PingResponse = [(byte)MqttPacketType.PingResp << 4, 0];

    /// <summary>A control item of no bytes: it wakes the write loop for what is written ahead of the queue (PUBRELs).</summary>
    public static readonly byte[] Nothing = [];

    /// <summary>
    /// The message of a QoS 2 delivery whose PUBREL is owed again but whose message this node never had (another node's
    /// connection sent it and the client has it): only its packet id goes on (<see cref="ReleaseOnly"/>).
    /// </summary>
    private static readonly RelayMessage ReleasedElsewhere = new() { App = string.Empty, Channel = string.Empty, Epoch = string.Empty };

    /// <summary>A PUBREL to send again for <paramref name="packetId"/>, carried from another node's session (MQTT 5 §4.4).</summary>
    public static MqttOutbound ReleaseOnly(ushort packetId) => new(ReleasedElsewhere, null, 2, PacketId: packetId, Release: true);

    /// <summary>What a PUBLISH adds around its payload and topic, counted for the item's share of the send budget.</summary>
    public const int PublishOverheadBytes = 16;

    /// <summary>The bytes an item stands for in the connection's send budget (a static lambda: one delegate for every connection).</summary>
    public static readonly Func<MqttOutbound, int> Size = static item =>
        item.Frame?.Length ?? (item.Message!.Data.Length + item.Message.Channel.Length + PublishOverheadBytes);
}
