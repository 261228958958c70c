using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// What every MQTT connection of the node shares: the node, the options and the client ids in use, per app, so a second
/// connection with a client id takes over from the first (MQTT 3.1.1 §3.1.4, 5.0 §3.1.4).
/// </summary>
internal sealed class MqttBroker(IngressNode node, IOptions<MqttOptions> options, ILogger<MqttConnection> logger)
{
    private readonly ConcurrentDictionary<(string App, string ClientId), MqttConnection> _clients = new();

    public IngressNode Node { get; } = node;

    public MqttOptions Options { get; } = options.Value;

    public ILogger<MqttConnection> Logger { get; } = logger;

    /// <summary>The node's retained messages (in this node only: docs/mqtt.md).</summary>
    public MqttRetained Retained { get; } = new(options.Value.MaxRetainedPerApp);

    /// <summary>Records <paramref name="connection"/> as its client id's; the connection it replaces, if any, is returned to be closed.</summary>
    public MqttConnection? Claim(string app, string clientId, MqttConnection connection)
    {
        MqttConnection? previous = null;
        _clients.AddOrUpdate((app, clientId), connection, (_, existing) =>
        {
            previous = existing;
            return connection;
        });
        return ReferenceEquals(previous, connection) ? null : previous;
    }

    /// <summary>Forgets <paramref name="connection"/> as its client id's, unless another has taken the id since.</summary>
    public void Release(string app, string clientId, MqttConnection connection) =>
        _clients.TryRemove(new KeyValuePair<(string, string), MqttConnection>((app, clientId), connection));
}
