namespace Relay.Ingress.Mqtt.Codec;

/// <summary>MQTT 5 property identifiers (§2.2.2.2) and the packets each may appear in.</summary>
internal static class MqttPropertyIds
{
    public const byte PayloadFormatIndicator = 0x01;
    public const byte MessageExpiryInterval = 0x02;
    public const byte ContentType = 0x03;
    public const byte ResponseTopic = 0x08;
    public const byte CorrelationData = 0x09;
    public const byte SubscriptionIdentifier = 0x0B;
    public const byte SessionExpiryInterval = 0x11;
    public const byte AssignedClientIdentifier = 0x12;
    public const byte ServerKeepAlive = 0x13;
    public const byte AuthenticationMethod = 0x15;
    public const byte AuthenticationData = 0x16;
    public const byte RequestProblemInformation = 0x17;
    public const byte WillDelayInterval = 0x18;
    public const byte RequestResponseInformation = 0x19;
    public const byte ResponseInformation = 0x1A;
    public const byte ServerReference = 0x1C;
    public const byte ReasonString = 0x1F;
    public const byte ReceiveMaximum = 0x21;
    public const byte TopicAliasMaximum = 0x22;
    public const byte TopicAlias = 0x23;
    public const byte MaximumQos = 0x24;
    public const byte RetainAvailable = 0x25;
    public const byte UserProperty = 0x26;
    public const byte MaximumPacketSize = 0x27;
    public const byte WildcardSubscriptionAvailable = 0x28;
    public const byte SubscriptionIdentifierAvailable = 0x29;
    public const byte SharedSubscriptionAvailable = 0x2A;

    /// <summary>The packet kind a will's properties are checked as (no packet type has this number).</summary>
    public const int Will = 0;

    private const int Connect = 1 << (int)MqttPacketType.Connect;
    private const int ConnAck = 1 << (int)MqttPacketType.ConnAck;
    private const int Publish = 1 << (int)MqttPacketType.Publish;
    private const int Acks = (1 << (int)MqttPacketType.PubAck) | (1 << (int)MqttPacketType.PubRec) | (1 << (int)MqttPacketType.PubRel) | (1 << (int)MqttPacketType.PubComp);
    private const int Subscribe = 1 << (int)MqttPacketType.Subscribe;
    private const int SubAck = 1 << (int)MqttPacketType.SubAck;
    private const int Unsubscribe = 1 << (int)MqttPacketType.Unsubscribe;
    private const int UnsubAck = 1 << (int)MqttPacketType.UnsubAck;
    private const int Disconnect = 1 << (int)MqttPacketType.Disconnect;
    private const int Auth = 1 << (int)MqttPacketType.Auth;
    private const int WillBit = 1 << Will;

    /// <summary>Whether property <paramref name="id"/> may appear in packet kind <paramref name="packet"/> (a packet type, or <see cref="Will"/>).</summary>
    public static bool AllowedIn(byte id, int packet) => (AllowedMask(id) & (1 << packet)) != 0;

    /// <summary>Whether <paramref name="id"/> is a property MQTT 5 defines.</summary>
    public static bool IsKnown(byte id) => AllowedMask(id) != 0;

    private static int AllowedMask(byte id) => id switch
    {
        PayloadFormatIndicator or MessageExpiryInterval or ContentType or ResponseTopic or CorrelationData => Publish | WillBit,
        SubscriptionIdentifier => Publish | Subscribe,
        SessionExpiryInterval => Connect | ConnAck | Disconnect,
        AssignedClientIdentifier or ServerKeepAlive or ResponseInformation or MaximumQos or RetainAvailable
            or WildcardSubscriptionAvailable or SubscriptionIdentifierAvailable or SharedSubscriptionAvailable => ConnAck,
        AuthenticationMethod or AuthenticationData => Connect | ConnAck | Auth,
        RequestProblemInformation or RequestResponseInformation => Connect,
        WillDelayInterval => WillBit,
        ServerReference => ConnAck | Disconnect,
        ReasonString => ConnAck | Acks | SubAck | UnsubAck | Disconnect | Auth,
        ReceiveMaximum or TopicAliasMaximum or MaximumPacketSize => Connect | ConnAck,
        TopicAlias => Publish,
        UserProperty => Connect | ConnAck | Publish | WillBit | Acks | Subscribe | SubAck | Unsubscribe | UnsubAck | Disconnect | Auth,
        _ => 0,
    };
}
