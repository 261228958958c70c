using Relay.Ingress.Limits;

namespace Relay.Ingress;

/// <summary>Options of the ingress service, bound from <c>Relay:Ingress</c>.</summary>
public sealed class IngressOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Ingress";

    /// <summary>Default largest payload: 64 KiB, as the protocol's <c>connected</c> frame announces.</summary>
    public const int DefaultMaxMessageBytes = 64 * 1024;

    /// <summary>Default heartbeat: 15 s keeps NATs and proxies from dropping idle sockets.</summary>
    public const int DefaultHeartbeatMs = 15_000;

    /// <summary>Default send budget: 16 MiB is ~0.3 s of publish-ws at 400k msgs/s and a whole default history (200 × 64 KiB); NATS allows 64 MB.</summary>
    public const long DefaultSendQueueBytes = 16L * 1024 * 1024;

    /// <summary>Default history page budget: 1 MiB holds a whole 1,000-message page of ~700-byte messages, and 15 of the largest.</summary>
    public const int DefaultHistoryPageBytes = 1024 * 1024;

    /// <summary>Default socket completions: inline, a thread-pool hop fewer per burst of input (docs/benchmarks.md).</summary>
    public const bool DefaultInlineSocketCompletions = true;

    /// <summary>Default publish rate: generous for people and devices; a flood gets 42900 rather than starving others.</summary>
    public const int DefaultPublishRatePerSecond = 100;

    /// <summary>Default subscriptions per connection: far above what a client needs, low enough to bound memory.</summary>
    public const int DefaultMaxSubscriptionsPerConnection = 1000;

    /// <summary>
    /// Default reads: a person or device reads far less; a client that names 20,000 channels a second (each a routing
    /// request, and on Redis a key) gets 42900.
    /// </summary>
    public const int DefaultReadRatePerSecond = 100;

    /// <summary>Default presence entries per connection: a client is present in a few rooms, not thousands.</summary>
    public const int DefaultMaxPresencePerConnection = 100;

    /// <summary>
    /// Default presence data: 4 KiB holds a profile (name, avatar URL, status) several times over, between Pusher's 1 KB
    /// user_info and a whole 64 KiB message; a full default presence set (1,000 members) then answers a get in ~4 MB.
    /// </summary>
    public const int DefaultMaxPresenceDataBytes = 4 * 1024;

    /// <summary>
    /// Default wait for the auth service when a token request or the JWKS is passed to it: issuing a token is one
    /// signature (well under a millisecond), so 5 s without an answer means the service is gone, not busy.
    /// </summary>
    public static readonly TimeSpan DefaultAuthTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Publishes per second a realtime connection may sustain (a token bucket).</summary>
    public int PublishRatePerSecond { get; set; } = DefaultPublishRatePerSecond;

    /// <summary>Publishes a connection may send at once above the rate (the bucket's size); 0 means twice the rate.</summary>
    public int PublishBurst { get; set; }

    /// <summary>Channels and patterns one connection may subscribe to.</summary>
    public int MaxSubscriptionsPerConnection { get; set; } = DefaultMaxSubscriptionsPerConnection;

    /// <summary>Subscribes, history reads and presence gets per second a realtime connection may sustain (a token bucket).</summary>
    public int ReadRatePerSecond { get; set; } = DefaultReadRatePerSecond;

    /// <summary>
    /// Reads a connection may send at once above the rate (the bucket's size); 0 means twice the rate or
    /// <see cref="MaxSubscriptionsPerConnection"/>, whichever is more, so a client can subscribe its whole set at once.
    /// </summary>
    public int ReadBurst { get; set; }

    /// <summary>Channels one realtime connection may be present in at once (enter without leave).</summary>
    public int MaxPresencePerConnection { get; set; } = DefaultMaxPresencePerConnection;

    /// <summary>The largest presence <c>data</c> of an enter or update, in bytes (never more than <see cref="MaxMessageBytes"/>).</summary>
    public int MaxPresenceDataBytes { get; set; } = DefaultMaxPresenceDataBytes;

    /// <summary>
    /// Removed with the connection-middleware path it switched (upgrades Relay's own transport does not take are
    /// served by ASP.NET Core's WebSocket); set, it stops the host at start-up with a message saying what to set instead.
    /// </summary>
    public bool? LeanWebSockets { get; set; }

    /// <summary>
    /// Removed: Relay's WebSockets always send straight to the socket (the output pipe it chose between measured half the
    /// fan-out rate, docs/benchmarks.md); set, it stops the host at start-up with a message saying so.
    /// </summary>
    public bool? DirectSocketSends { get; set; }

    /// <summary>
    /// Run socket completions on the runtime's socket event threads, where the bytes arrived, instead of handing each to
    /// the thread pool (see <c>Connections/SocketCompletions</c>). Read when the host is built; a
    /// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS</c> already in the environment wins.
    /// </summary>
    public bool InlineSocketCompletions { get; set; } = DefaultInlineSocketCompletions;

    /// <summary>
    /// Take plain-HTTP realtime upgrades at accept, before they become Kestrel connections, and serve them on the bare
    /// socket with Relay's WebSocket (the least memory per connection); applies to IP endpoints. Everything else is
    /// Kestrel's, and its realtime upgrades are served by ASP.NET Core's WebSocket, as every upgrade is when this is
    /// off. Kestrel's connection limits do not count these. MQTT over TCP is served on the bare socket too when
    /// <c>Relay:Mqtt:OwnTransport</c> asks for it.
    /// </summary>
    public bool OwnTransport { get; set; } = true;

    /// <summary>
    /// For WebSockets and MQTT over TCP on Relay's own transport, wait for a connection's input (a WebSocket's upgrade
    /// head too) in Relay's own epoll poller (Linux; see <c>Connections/ReadinessPoller</c>) rather than with the
    /// runtime's zero-byte receive, and take connections as bare descriptors: a slot per connection instead of the
    /// runtime's per-socket context, receive arguments and operation (~0.6 KiB less per idle connection). Ignored where
    /// epoll is not there. False is the runtime's wait and accept.
    /// </summary>
    public bool ReadinessPoller { get; set; } = true;

    /// <summary>
    /// The most client connections (realtime, SSE and HTTP alike) open at once; past it a connection is answered
    /// 503 (50300, <c>Retry-After</c>). 0 derives it from the open-file limit, less what the process holds at start
    /// and a reserve for the runtime (see <c>Connections/ConnectionGate</c>); a cap above that fails at start-up.
    /// </summary>
    public int MaxConnections { get; set; }

    /// <summary>
    /// Client connections one IP address may hold open at once on this node, over every listener (realtime, SSE, HTTP,
    /// Pusher, MQTT, gRPC's HTTP/2 connections); past it a new one is refused (429 with 42900 and <c>Retry-After</c>; MQTT:
    /// CONNACK 0x97 / 0x03). 0 (the default) turns it off: many customers sit behind one NAT address, and so does the
    /// benchmark's fleet. The address is the socket's peer: no forwarded header is read (see docs/security.md).
    /// </summary>
    public int MaxConnectionsPerIp { get; set; }

    /// <summary>New connections per second one IP address may open on this node (a token bucket); 0 (the default) turns it off.</summary>
    public int ConnectionRatePerIp { get; set; }

    /// <summary>New connections one IP address may open at once above <see cref="ConnectionRatePerIp"/> (the bucket's size); 0 means twice the rate.</summary>
    public int ConnectionBurstPerIp { get; set; }

    /// <summary>Limits per app on this node (<c>Relay:Ingress:AppLimits:Defaults</c> and <c>:Apps:{app}</c>); all off by default.</summary>
    public AppLimitsOptions AppLimits { get; set; } = new();

    /// <summary>
    /// The auth service's base URL (<c>http://auth:8081/</c>). A node that takes its keys from the auth service
    /// (<c>Relay:Auth:KeySource=redis</c>) needs it and passes <c>POST /v1/tokens</c> and <c>GET /.well-known/jwks.json</c>
    /// there unchanged, so every public path answers on every ingress node; nodes do not issue tokens themselves.
    /// </summary>
    public string? AuthUrl { get; set; }

    /// <summary>How long a request passed to <see cref="AuthUrl"/> may take before the client gets 503 (50300).</summary>
    public TimeSpan AuthTimeout { get; set; } = DefaultAuthTimeout;

    /// <summary>This node's id on the bus; empty means a generated one.</summary>
    public string NodeId { get; set; } = string.Empty;

    /// <summary>The largest payload (<c>data</c> plus <c>name</c>) a message may carry, in bytes.</summary>
    public int MaxMessageBytes { get; set; } = DefaultMaxMessageBytes;

    /// <summary>The heartbeat interval announced to clients and used for WebSocket keep-alive pings.</summary>
    public int HeartbeatMs { get; set; } = DefaultHeartbeatMs;

    /// <summary>
    /// Bytes a connection may have waiting to be sent (its transport's buffer and its backlog together) before it is
    /// disconnected as a slow consumer (50301).
    /// </summary>
    public long SendQueueBytes { get; set; } = DefaultSendQueueBytes;

    /// <summary>Replaced by <see cref="SendQueueBytes"/>: set, it stops the host at start-up with a message saying so.</summary>
    public int? SendQueueFrames { get; set; }

    /// <summary>
    /// The size a history page stops at (WebSocket <c>history</c> and HTTP): it holds the newest messages that fit
    /// (at least one) and says <c>"truncated":true</c>; the rest comes with <c>before</c>.
    /// </summary>
    public int HistoryPageBytes { get; set; } = DefaultHistoryPageBytes;

    /// <summary>The largest HTTP publish body (a batch of messages), in bytes.</summary>
    public int MaxHttpBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>How long a closing connection may take to flush its last frames before it is aborted.</summary>
    public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// On shutdown, how long the node waits for its connections to go after telling each <c>disconnect</c> 50300 with
    /// <c>reconnect: true</c> ("node draining"), before it aborts the rest. Zero (the default, for a laptop's Ctrl+C)
    /// aborts at once; a deployment behind a load balancer sets it (the Kubernetes manifests: 20 s) so clients move to
    /// another node and resume with <c>since</c> instead of seeing the socket drop.
    /// </summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.Zero;

    /// <summary>
    /// Over a bus that may lose deliveries (Redis pub/sub): how long a channel stays quiet at this node, after its last
    /// message or presence event, before the node asks its position once and reads back anything it missed. It repairs
    /// a lost last message that no later message or resync would reveal, at the cost of one position request per
    /// channel and node after each burst. Zero turns the check off (a lost tail then waits for the next message).
    /// </summary>
    public TimeSpan QuietCheckAfter { get; set; } = TimeSpan.FromSeconds(2);
}
