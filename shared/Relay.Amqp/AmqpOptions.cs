namespace Relay.Amqp;

/// <summary>
/// Options of the AMQP bridge, bound from <c>Relay:Amqp</c>: the channels of one app to a RabbitMQ exchange
/// (outbound) and a RabbitMQ queue into that app's channels (inbound). Both are off until configured.
/// </summary>
public sealed class AmqpOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Amqp";

    /// <summary>Default exchange type: a topic exchange lets consumers bind to the channels they want by routing key.</summary>
    public const string DefaultExchangeType = "topic";

    /// <summary>Default routing key: the channel itself, so a binding names channels as subscribers do.</summary>
    public const string DefaultRoutingKey = "{channel}";

    /// <summary>Default channel header: Relay's own header names all start with <c>relay-</c> (as the Kafka bridge's do).</summary>
    public const string DefaultChannelHeader = "relay-channel";

    /// <summary>Default outbound buffer: 64 MiB of payloads rides out a reconnect of a few seconds at tens of MB/s.</summary>
    public const int DefaultOutboundQueueBytes = 64 * 1024 * 1024;

    /// <summary>Default unconfirmed publishes: enough to keep a loopback broker's confirm latency (ms, fsync batched) off the rate.</summary>
    public const int DefaultOutboundMaxInFlight = 512;

    /// <summary>Default prefetch: a few routing requests' worth of deliveries, small enough that a reconnect redelivers little.</summary>
    public const int DefaultPrefetch = 300;

    /// <summary>Default largest inbound body: the same as the ingress default (<c>Relay:Ingress:MaxMessageBytes</c>).</summary>
    public const int DefaultInboundMaxMessageBytes = 64 * 1024;

    /// <summary>The broker (<c>amqp://user:password@host:5672/vhost</c>, or <c>amqps://</c>); required when either direction is on.</summary>
    public string? Uri { get; set; }

    /// <summary>The app whose channels are bridged, both ways; required when either direction is on.</summary>
    public string? App { get; set; }

    /// <summary>Whether the bridge declares what it uses (durable exchanges, the queue and its bindings); off, they must exist.</summary>
    public bool Declare { get; set; } = true;

    /// <summary>The exchange every sequenced message of <see cref="OutboundChannels"/> is published to; unset: no outbound.</summary>
    public string? Exchange { get; set; }

    /// <summary>The type <see cref="Exchange"/> and <see cref="InboundExchange"/> are declared with (topic, direct, fanout, headers).</summary>
    public string ExchangeType { get; set; } = DefaultExchangeType;

    /// <summary>Channel names or patterns (<c>+</c>, <c>#</c>) of <see cref="App"/> published outbound; empty: every channel.</summary>
    public IList<string> OutboundChannels { get; } = [];

    /// <summary>The routing key of an outbound message: <c>{channel}</c> and <c>{app}</c> are replaced.</summary>
    public string RoutingKey { get; set; } = DefaultRoutingKey;

    /// <summary>Payload bytes outbound may hold (queued and unconfirmed) before it drops new messages (counted, logged).</summary>
    public int OutboundQueueBytes { get; set; } = DefaultOutboundQueueBytes;

    /// <summary>Publishes sent and not yet confirmed by the broker.</summary>
    public int OutboundMaxInFlight { get; set; } = DefaultOutboundMaxInFlight;

    /// <summary>The queue consumed into channels of <see cref="App"/>; unset: no inbound.</summary>
    public string? Queue { get; set; }

    /// <summary>An exchange the queue is bound to (declared with <see cref="ExchangeType"/>) when <see cref="Declare"/> is on.</summary>
    public string? InboundExchange { get; set; }

    /// <summary>The binding keys of the queue to <see cref="InboundExchange"/>; empty: <c>#</c> (everything on a topic exchange).</summary>
    public IList<string> InboundBindingKeys { get; } = [];

    /// <summary>The queue's dead-letter exchange (<c>x-dead-letter-exchange</c>, set when the bridge declares the queue): where rejected messages go.</summary>
    public string? DeadLetterExchange { get; set; }

    /// <summary>The message header that names the channel; a message without it uses its routing key.</summary>
    public string ChannelHeader { get; set; } = DefaultChannelHeader;

    /// <summary>Deliveries the broker may send before the bridge acknowledges them (<c>basic.qos</c> prefetch count).</summary>
    public int Prefetch { get; set; } = DefaultPrefetch;

    /// <summary>Largest inbound body; a larger message is rejected (dead-lettered when the queue has a dead-letter exchange).</summary>
    public int InboundMaxMessageBytes { get; set; } = DefaultInboundMaxMessageBytes;

    /// <summary>Whether outbound is configured.</summary>
    public bool OutboundEnabled => !string.IsNullOrEmpty(Exchange);

    /// <summary>Whether inbound is configured.</summary>
    public bool InboundEnabled => !string.IsNullOrEmpty(Queue);
}
