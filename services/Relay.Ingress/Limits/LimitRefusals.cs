using System.Diagnostics.Metrics;

namespace Relay.Ingress.Limits;

/// <summary>
/// <c>relay.ingress.limit_refusals</c>: connections, publishes and subscriptions refused by a per-address or per-app
/// limit, by <c>reason</c> (<see cref="IpConnections"/> …). The node's own cap keeps its <c>connections_refused</c>.
/// </summary>
internal sealed class LimitRefusals
{
    public const string IpConnections = "ip_connections";
    public const string IpRate = "ip_rate";
    public const string AppConnections = "app_connections";
    public const string AppClusterConnections = "app_cluster_connections";
    public const string AppPublishes = "app_publishes";
    public const string AppSubscriptions = "app_subscriptions";

    private readonly Counter<long> _refused;

    public LimitRefusals(IMeterFactory meters)
    {
        ArgumentNullException.ThrowIfNull(meters);
        _refused = meters.Create(IngressMetrics.MeterName).CreateCounter<long>("relay.ingress.limit_refusals", description: "Connections, publishes and subscriptions refused by a per-IP or per-app limit, by reason.");
    }

    public void Add(string reason) => _refused.Add(1, new KeyValuePair<string, object?>("reason", reason));
}
