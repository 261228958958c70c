namespace Relay.Ingress.Mqtt;

/// <summary>
/// A connection's QoS 2 publishes on their way to routing, made on its first (most connections never publish at QoS 2):
/// per packet id, the resends that came meanwhile; and, while a publish waits for its receipt in the session store
/// (<see cref="MqttBroker.DurableReceipts"/>), the last publish's way to routing, which the next one follows so
/// publishes reach routing in the order they came. Under the connection's awaiting-release lock.
/// </summary>
internal sealed class MqttQos2Routing
{
    /// <summary>Packet ids being routed, and how many resends of each came meanwhile (each gets a PUBREC with the first's).</summary>
    public Dictionary<ushort, int> Resent { get; } = [];

    /// <summary>Completes once the last publish taken is on its way to routing; null before any waited.</summary>
    public Task? LastSent { get; set; }
}
