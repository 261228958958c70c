namespace Relay.Ingress.Mqtt;

/// <summary>Options of the MQTT listeners (TCP and WebSocket at <c>/mqtt</c>), bound from <c>Relay:Mqtt</c>.</summary>
public sealed class MqttOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Mqtt";

    /// <summary>MQTT's registered port (IANA), where every MQTT client looks first.</summary>
    public const int DefaultPort = 1883;

    /// <summary>MQTT over TLS's registered port (IANA), served when the host has a certificate (<c>Relay:Tls</c>).</summary>
    public const int DefaultTlsPort = 8883;

    /// <summary>Default largest packet: 128 KiB holds the default 64 KiB payload with a long topic and MQTT 5 properties to spare.</summary>
    public const int DefaultMaxPacketBytes = 128 * 1024;

    /// <summary>Default wait for CONNECT: 10 s is ample for a device on a slow link; an idle socket holds a slot no longer.</summary>
    public static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Default longest keep-alive: 20 minutes; an MQTT 5 client asking for more (or 0, none) is told this one.</summary>
    public const int DefaultMaxKeepAliveSeconds = 1200;

    /// <summary>Default QoS 1 and 2 deliveries awaiting PUBACK or PUBCOMP per connection: 32 keeps a link busy without holding much for a slow device.</summary>
    public const int DefaultMaxInflight = 32;

    /// <summary>Default QoS 1 and 2 publishes a client may have unacknowledged (MQTT 5 Receive Maximum): as many as a realtime connection pipelines.</summary>
    public const int DefaultReceiveMaximum = 64;

    /// <summary>Default topics with a retained message per app: 10,000 messages of at most 64 KiB bound a node's memory for them.</summary>
    public const int DefaultMaxRetainedPerApp = 10_000;

    /// <summary>Default longest persistent session left unresumed: a day covers a device offline overnight.</summary>
    public const uint DefaultMaxSessionExpirySeconds = 86_400;

    /// <summary>Default QoS 1/2 messages a persistent session keeps for an absent client: a thousand, oldest dropped first.</summary>
    public const int DefaultMaxQueuedMessages = 1000;

    /// <summary>Default bytes a persistent session keeps for an absent client: 1 MiB, a thousand 1 KiB readings.</summary>
    public const long DefaultMaxQueuedBytes = 1024 * 1024;

    /// <summary>Default topic aliases Relay sends per MQTT 5 connection: 32, as many as it takes from clients; a device's topics are few.</summary>
    public const int DefaultMaxServerTopicAliases = 32;

    /// <summary>Default seconds between writes of a connected persistent session's positions while it delivers.</summary>
    public const int DefaultPositionWriteSeconds = 5;

    /// <summary>Whether the node serves MQTT (TCP on <see cref="Port"/> and WebSocket at <c>/mqtt</c>).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>The TCP port of the MQTT listener, on every address; 0 picks a free one (tests).</summary>
    public int Port { get; set; } = DefaultPort;

    /// <summary>
    /// Serve MQTT over TCP on the bare socket (Relay's own transport, with <c>Relay:Ingress:OwnTransport</c>): ~5 KiB per
    /// idle connection instead of ~6.6 KiB on Kestrel's socket transport, and QoS 0 deliveries straight into the send
    /// buffer (a fan-out to 10,000 subscribers ~2x Kestrel's transport's deliveries/s; docs/benchmarks.md, MQTT). False:
    /// Kestrel's socket transport, as every other non-realtime endpoint.
    /// </summary>
    public bool OwnTransport { get; set; } = true;

    /// <summary>The TCP port of MQTT over TLS, on every address, when <c>Relay:Tls</c> names a certificate; 0 picks a free one (tests), -1 serves none.</summary>
    public int TlsPort { get; set; } = DefaultTlsPort;

    /// <summary>Client certificates on the TLS port (<c>Relay:Mqtt:ClientCertificates</c>): device certificates mapped to keys.</summary>
    public MqttClientCertificateOptions ClientCertificates { get; } = new();

    /// <summary>Connections without credentials (<c>Relay:Mqtt:Anonymous</c>): off unless a key is named.</summary>
    public MqttAnonymousOptions Anonymous { get; } = new();

    /// <summary>The largest MQTT packet a client may send, header included; larger ones are refused from their header (MQTT 5: 0x95).</summary>
    public int MaxPacketBytes { get; set; } = DefaultMaxPacketBytes;

    /// <summary>How long a new connection may take to send CONNECT.</summary>
    public TimeSpan ConnectTimeout { get; set; } = DefaultConnectTimeout;

    /// <summary>The longest keep-alive an MQTT 5 client is granted (Server Keep Alive); MQTT 3.1.1 clients keep their own.</summary>
    public int MaxKeepAliveSeconds { get; set; } = DefaultMaxKeepAliveSeconds;

    /// <summary>QoS 1 and 2 deliveries a connection may have awaiting PUBACK or PUBCOMP (an MQTT 5 client's smaller Receive Maximum wins).</summary>
    public int MaxInflight { get; set; } = DefaultMaxInflight;

    /// <summary>QoS 1 and 2 publishes a client may have awaiting their acknowledgement (announced as MQTT 5 Receive Maximum).</summary>
    public int ReceiveMaximum { get; set; } = DefaultReceiveMaximum;

    /// <summary>Topics of one app that may hold a retained message on this node; a retained publish to another is refused (MQTT 5: 0x97).</summary>
    public int MaxRetainedPerApp { get; set; } = DefaultMaxRetainedPerApp;

    /// <summary>
    /// Topic aliases Relay may send an MQTT 5 client on one connection (fewer when the client's Topic Alias Maximum is
    /// lower; 0: none): a topic's first delivery carries its name and an alias, later ones the alias alone. Once all are
    /// taken, other topics go with their name (no alias is replaced).
    /// </summary>
    public int MaxServerTopicAliases { get; set; } = DefaultMaxServerTopicAliases;

    /// <summary>The longest a persistent session is kept unresumed (MQTT 5 clients asking more are told this; 3.1.1 ones get it).</summary>
    public uint MaxSessionExpirySeconds { get; set; } = DefaultMaxSessionExpirySeconds;

    /// <summary>QoS 1/2 messages a persistent session keeps while its client is away; past it the oldest is dropped.</summary>
    public int MaxQueuedMessages { get; set; } = DefaultMaxQueuedMessages;

    /// <summary>Bytes of messages a persistent session keeps while its client is away; past it the oldest is dropped.</summary>
    public long MaxQueuedBytes { get; set; } = DefaultMaxQueuedBytes;

    /// <summary>
    /// Over a durable session store (the Redis bus): a connected persistent session that delivered anything since it was
    /// last written is written again this often (seconds; 0: only on subscribe, unsubscribe and its refresh), so a node
    /// that resumes it after this one died sends again about this many seconds of deliveries, not everything since the
    /// session's last subscribe. One store write per delivering session per period.
    /// </summary>
    public int PositionWriteSeconds { get; set; } = DefaultPositionWriteSeconds;
}
