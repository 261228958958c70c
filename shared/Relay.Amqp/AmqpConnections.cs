using RabbitMQ.Client;

namespace Relay.Amqp;

/// <summary>How the bridge connects: one connection per direction, recovered by the bridge itself (not the client library).</summary>
internal static class AmqpConnections
{
    /// <summary>
    /// Heartbeat: a broker or network that went silent is noticed within about twice this, so what was unconfirmed is
    /// published again (and what was unacknowledged redelivered) within seconds, not after TCP's own minutes.
    /// </summary>
    private static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(10);

    /// <summary>How long opening a connection may take before it counts as failed and is tried again.</summary>
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A factory for <paramref name="name"/> (shown in the broker's connection list). Automatic recovery is off: the
    /// bridge reconnects itself, so it knows which publishes were lost with a connection and which deliveries went back
    /// to the queue, and it declares its topology again on each connection.
    /// </summary>
    public static ConnectionFactory Factory(AmqpOptions options, string name) => new()
    {
        Uri = new Uri(options.Uri!),
        ClientProvidedName = name,
        AutomaticRecoveryEnabled = false,
        TopologyRecoveryEnabled = false,
        RequestedHeartbeat = Heartbeat,
        RequestedConnectionTimeout = ConnectTimeout,
    };

    /// <summary>The next wait before reconnecting: doubled, up to <paramref name="last"/>.</summary>
    public static TimeSpan Next(TimeSpan wait, TimeSpan last) => TimeSpan.FromTicks(Math.Min(wait.Ticks * 2, last.Ticks));
}
