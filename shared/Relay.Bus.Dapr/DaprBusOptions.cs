using System.Globalization;

namespace Relay.Bus.Dapr;

/// <summary>Options of the Dapr bus, bound from <c>Relay:Dapr</c> (used when <c>Relay:Bus</c> is <c>dapr</c>).</summary>
public sealed class DaprBusOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Dapr";

    /// <summary>Default HTTP port of the sidecar: daprd's own default, what <c>DAPR_HTTP_PORT</c> says when it is unset.</summary>
    public const int DefaultHttpPort = 3500;

    /// <summary>Default pub/sub component name: the one <c>infra/dapr/components/</c> declares.</summary>
    public const string DefaultPubSub = "relay-pubsub";

    /// <summary>Default app id of the routing service (and of fan-out): the ids <c>infra/dapr/components/</c> scopes.</summary>
    public const string DefaultRoutingAppId = "relay-routing";

    /// <summary>Default app id of the fan-out service.</summary>
    public const string DefaultFanOutAppId = "relay-fanout";

    /// <summary>Default topic prefix: every topic of the bus starts with it, so scopes can name them.</summary>
    public const string DefaultTopicPrefix = "relay";

    /// <summary>Default request timeout: longer than a shard lease (Relay:Redis:LeaseTtl, 5 s), so a request outlasts a handover.</summary>
    public static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Default largest pub/sub message: well under the 1 MiB most brokers (and Dapr's HTTP body limit, 4 MiB) take.</summary>
    public const int DefaultMaxBatchBytes = 256 * 1024;

    /// <summary>
    /// Default hold of a message that came past a gap: Dapr delivers a topic's messages concurrently, so one overtaken
    /// is late by a few deliveries (milliseconds); 200 ms covers that on a busy machine and stays well under a
    /// subscriber's patience.
    /// </summary>
    public static readonly TimeSpan DefaultReorderHold = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// The sidecar's HTTP API. Unset: <c>http://127.0.0.1:{DAPR_HTTP_PORT}</c>, the port daprd tells its app through
    /// that variable (3500 without it).
    /// </summary>
    public Uri? HttpEndpoint { get; set; }

    /// <summary>
    /// The sidecar's gRPC API, for the record: the bus speaks HTTP only (docs/dapr.md says why). Unset:
    /// <c>http://127.0.0.1:{DAPR_GRPC_PORT}</c>.
    /// </summary>
    public Uri? GrpcEndpoint { get; set; }

    /// <summary>The pub/sub component sequenced messages, node batches and interest changes travel on.</summary>
    public string PubSub { get; set; } = DefaultPubSub;

    /// <summary>The app id routing requests are invoked on.</summary>
    public string RoutingAppId { get; set; } = DefaultRoutingAppId;

    /// <summary>The app id channel queries are invoked on.</summary>
    public string FanOutAppId { get; set; } = DefaultFanOutAppId;

    /// <summary>Prefix of the topics: <c>{prefix}-sequenced</c>, <c>{prefix}-interest</c>, <c>{prefix}-node-{nodeId}</c>.</summary>
    public string TopicPrefix { get; set; } = DefaultTopicPrefix;

    /// <summary>How long a routing request may take, sidecars included, before it is answered 50300.</summary>
    public TimeSpan RequestTimeout { get; set; } = DefaultRequestTimeout;

    /// <summary>
    /// How long an ingress node holds a message that came past a gap in its channel's seqs, waiting for the late ones
    /// (Dapr reorders), before it lets it through and reads the gap from history. 0: never held.
    /// </summary>
    public TimeSpan ReorderHold { get; set; } = DefaultReorderHold;

    /// <summary>Largest body of one published message (frames waiting are packed up to it).</summary>
    public int MaxBatchBytes { get; set; } = DefaultMaxBatchBytes;

    /// <summary>The HTTP endpoint in use (the setting, or the one the environment names).</summary>
    public Uri ResolvedHttpEndpoint => HttpEndpoint ?? FromPort(Environment.GetEnvironmentVariable("DAPR_HTTP_PORT"), DefaultHttpPort);

    /// <summary>The gRPC endpoint the environment names (daprd's default 50001 without it).</summary>
    public Uri ResolvedGrpcEndpoint => GrpcEndpoint ?? FromPort(Environment.GetEnvironmentVariable("DAPR_GRPC_PORT"), 50001);

    /// <summary>The topic sequenced messages and presence events go to fan-out on.</summary>
    public string SequencedTopic => TopicPrefix + "-sequenced";

    /// <summary>The topic interest changes go to fan-out on.</summary>
    public string InterestTopic => TopicPrefix + "-interest";

    /// <summary>The topic of one ingress node's batches.</summary>
    public string NodeTopic(string nodeId) => TopicPrefix + "-node-" + nodeId;

    private static Uri FromPort(string? port, int fallback) =>
        new($"http://127.0.0.1:{(int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value : fallback).ToString(CultureInfo.InvariantCulture)}/");
}
