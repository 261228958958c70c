namespace Relay.Ingress.Limits;

/// <summary>One app's limits on one node; an unset value falls back to <c>Relay:Ingress:AppLimits:Defaults</c>, and 0 is no limit.</summary>
public sealed class AppLimitSettings
{
    /// <summary>Client connections of the app open at once (realtime, SSE, MQTT, Pusher, gRPC streams); past it: 42900 / the protocol's refusal.</summary>
    public int? MaxConnections { get; set; }

    /// <summary>
    /// Client connections of the app open at once over every ingress node of the deployment (counted through the bus: in
    /// Redis on the Redis and Dapr buses, in the process on the in-memory bus); past it: 42900 / the protocol's refusal.
    /// </summary>
    public int? MaxClusterConnections { get; set; }

    /// <summary>Messages per second the app may publish, over every connection and HTTP, gRPC, MQTT and Pusher publish (a token bucket).</summary>
    public int? PublishRatePerSecond { get; set; }

    /// <summary>Messages the app may publish at once above the rate (the bucket's size); 0 means twice the rate.</summary>
    public int? PublishBurst { get; set; }

    /// <summary>Subscriptions (channels and patterns) the app's connections may hold at once on the node.</summary>
    public int? MaxSubscriptions { get; set; }
}
