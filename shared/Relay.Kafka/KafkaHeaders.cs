namespace Relay.Kafka;

/// <summary>The record headers the firehose writes and ingest reads (values UTF-8; numbers in decimal).</summary>
public static class KafkaHeaders
{
    /// <summary>The app.</summary>
    public const string App = "relay-app";

    /// <summary>The channel.</summary>
    public const string Channel = "relay-channel";

    /// <summary>The message's seq in its channel.</summary>
    public const string Seq = "relay-seq";

    /// <summary>The channel's epoch.</summary>
    public const string Epoch = "relay-epoch";

    /// <summary>The message id (the publisher's idempotency key); ingest dedupes by it.</summary>
    public const string Id = "relay-id";

    /// <summary>The event name.</summary>
    public const string Name = "relay-name";

    /// <summary>The publisher's client id.</summary>
    public const string ClientId = "relay-client-id";

    /// <summary><c>json</c> (the value is a JSON value) or <c>binary</c>.</summary>
    public const string Encoding = "relay-encoding";

    /// <summary>W3C trace context of the publish.</summary>
    public const string TraceParent = "traceparent";
}
