namespace Relay.Ingress.Connections;

/// <summary>What the gate says to a new connection.</summary>
internal enum Admission
{
    /// <summary>Counted in.</summary>
    Admitted,

    /// <summary>The node is at its cap (<c>MaxConnections</c>): 503 with 50300.</summary>
    NodeFull,

    /// <summary>Its address holds <c>MaxConnectionsPerIp</c> connections: 429 with 42900.</summary>
    AddressFull,

    /// <summary>Its address opened connections faster than <c>ConnectionRatePerIp</c>: 429 with 42900.</summary>
    AddressRate,
}
