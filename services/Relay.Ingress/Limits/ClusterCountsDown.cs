namespace Relay.Ingress.Limits;

/// <summary>What a connection of an app with a cluster-wide limit gets while the counts across nodes cannot be reached.</summary>
public enum ClusterCountsDown
{
    /// <summary>
    /// Admitted (the default): a Redis outage does not lock every limited app out, the per-node <c>MaxConnections</c>
    /// still holds, and the node adds what it admitted to the shared count once Redis answers again.
    /// </summary>
    Admit,

    /// <summary>Refused with 42900 (its protocol's form), for plans whose limit must never be exceeded.</summary>
    Refuse,
}
