namespace Relay.Amqp;

/// <summary>The message headers outbound writes and inbound reads (strings as AMQP long strings; the seq a 64-bit integer).</summary>
public static class AmqpHeaders
{
    /// <summary>The app.</summary>
    public const string App = "relay-app";

    /// <summary>The channel.</summary>
    public const string Channel = "relay-channel";

    /// <summary>The message's seq in its channel.</summary>
    public const string Seq = "relay-seq";

    /// <summary>The channel's epoch.</summary>
    public const string Epoch = "relay-epoch";

    /// <summary>The message id (the publisher's idempotency key), also the AMQP <c>message-id</c> property.</summary>
    public const string Id = "relay-id";

    /// <summary>The event name.</summary>
    public const string Name = "relay-name";

    /// <summary>The publisher's client id.</summary>
    public const string ClientId = "relay-client-id";

    /// <summary><c>json</c> (the body is a JSON value) or <c>binary</c>.</summary>
    public const string Encoding = "relay-encoding";

    /// <summary>W3C trace context of the publish.</summary>
    public const string TraceParent = "traceparent";
}
