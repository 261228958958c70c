using System.Collections.Concurrent;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using Relay.Bus.Connections;
using Relay.Core.Protocol;
using Relay.Ingress.Realtime;
using Relay.ServiceDefaults;

namespace Relay.Ingress.Limits;

/// <summary>
/// Per-app limits (<see cref="AppLimitsOptions"/>): connections open on this node and across the cluster (counted through
/// the bus's <see cref="IConnectionCounts"/>: one round trip per open, none per message), messages published a second (one token
/// bucket per app over all its connections and its HTTP, gRPC, MQTT and Pusher publishes) and subscriptions held. One
/// app at its limit is refused with 42900 (or its protocol's form of it) and no other app notices: each has its own
/// counts. With nothing set (the default) every call returns at once without a lookup. A publish with a rate set takes
/// the app's lock once per request (nanoseconds beside the routing hop it precedes).
/// </summary>
internal sealed class AppLimits
{
    /// <summary>Seconds a client refused by an app limit is asked to wait (HTTP <c>Retry-After</c>).</summary>
    public const string RetryAfterSeconds = "1";

    private readonly AppLimitsOptions _options;
    private readonly TimeProvider _time;
    private readonly LimitRefusals _refusals;
    private readonly IConnectionCounts _clusterCounts;
    private readonly ConcurrentDictionary<string, AppState> _apps = new(StringComparer.Ordinal);
    private readonly Func<string, AppState> _create;
    private readonly bool _any;

    public AppLimits(IOptions<IngressOptions> options, TimeProvider time, LimitRefusals refusals, IConnectionCounts clusterCounts)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value.AppLimits;
        _time = time;
        _refusals = refusals;
        _clusterCounts = clusterCounts;
        _create = Create;
        _any = IsSet(_options.Defaults) || _options.Apps.Values.Any(IsSet);
        AnyClusterLimit = _options.Defaults.MaxClusterConnections > 0 || _options.Apps.Values.Any(static a => a.MaxClusterConnections > 0);
    }

    /// <summary>The HTTP answer to a request an app limit refused: 429 with the error and <c>Retry-After</c>.</summary>
    public static IResult Refusal(HttpContext context, RelayError error)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Response.Headers.RetryAfter = RetryAfterSeconds;
        return RelayResults.Error(error);
    }

    /// <summary>
    /// Counts a new connection of <paramref name="app"/> in, against its limit on this node and then, where it has one,
    /// its limit across the cluster (one round trip to the bus's counts); null, or the error that refuses it (not counted).
    /// Completes synchronously for an app without a cluster-wide limit.
    /// </summary>
    public ValueTask<RelayError?> TryOpenAsync(string app, CancellationToken cancellationToken)
    {
        if (For(app) is not { } state)
        {
            return ValueTask.FromResult<RelayError?>(null);
        }

        if (state.MaxConnections > 0
            && TryCount(ref state.Connections, state.MaxConnections, LimitRefusals.AppConnections, app, "connections on this node (Relay:Ingress:AppLimits): retry later, or connect to another node") is { } overNode)
        {
            return ValueTask.FromResult<RelayError?>(overNode);
        }

        return state.MaxClusterConnections > 0 ? TryOpenInClusterAsync(app, state, cancellationToken) : ValueTask.FromResult<RelayError?>(null);
    }

    /// <summary>A connection counted in by <see cref="TryOpenAsync"/> (it returned null) ended.</summary>
    public void Closed(string app)
    {
        if (For(app) is not { } state)
        {
            return;
        }

        if (state.MaxConnections > 0)
        {
            Interlocked.Decrement(ref state.Connections);
        }

        if (state.MaxClusterConnections > 0)
        {
            _clusterCounts.Remove(app);
        }
    }

    /// <summary>Whether any app has a cluster-wide connection limit (the start-up log says where it is counted then).</summary>
    internal bool AnyClusterLimit { get; }

    /// <summary>Where the cluster-wide counts are kept, in words.</summary>
    internal string ClusterScope => _clusterCounts.Scope;

    /// <summary>What an open gets while the counts across nodes cannot be reached.</summary>
    internal ClusterCountsDown WhenCountsDown => _options.ClusterCountsDown;

    private async ValueTask<RelayError?> TryOpenInClusterAsync(string app, AppState state, CancellationToken cancellationToken)
    {
        var admitWhenDown = _options.ClusterCountsDown == ClusterCountsDown.Admit;
        ConnectionCount counted;
        try
        {
            counted = await _clusterCounts.TryAddAsync(app, state.MaxClusterConnections, admitWhenDown, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            UncountOnNode(state);
            throw;
        }

        if (counted == ConnectionCount.Counted || (counted == ConnectionCount.Unavailable && admitWhenDown))
        {
            return null;
        }

        UncountOnNode(state);
        _refusals.Add(LimitRefusals.AppClusterConnections);
        return counted == ConnectionCount.Full
            ? new RelayError(ErrorCodes.RateLimited, $"app '{app}' holds its limit of {state.MaxClusterConnections} connections across the cluster (Relay:Ingress:AppLimits, MaxClusterConnections): retry later")
            : new RelayError(ErrorCodes.RateLimited, $"app '{app}' has a limit of {state.MaxClusterConnections} connections across the cluster and its count cannot be reached now (Relay:Ingress:AppLimits:ClusterCountsDown is Refuse): retry later");
    }

    private static void UncountOnNode(AppState state)
    {
        if (state.MaxConnections > 0)
        {
            Interlocked.Decrement(ref state.Connections);
        }
    }

    /// <summary>Takes <paramref name="messages"/> from the app's publish bucket; null, or the 42900 that refuses the whole request.</summary>
    public RelayError? TryPublish(string app, int messages = 1)
    {
        if (For(app) is not { Publishes: { } bucket } state)
        {
            return null;
        }

        var now = _time.GetTimestamp();
        bool taken;
        lock (bucket)
        {
            taken = bucket.TryTake(now, _time.TimestampFrequency, messages);
        }

        if (taken)
        {
            return null;
        }

        _refusals.Add(LimitRefusals.AppPublishes);
        return new RelayError(ErrorCodes.RateLimited, $"app '{app}' publishes above its {state.PublishRate} messages a second on this node (Relay:Ingress:AppLimits); slow down");
    }

    /// <summary>Counts a new subscription of <paramref name="app"/> in; null, or the 42900 that refuses it (not counted).</summary>
    public RelayError? TrySubscribe(string app) => For(app) is { MaxSubscriptions: > 0 } state
        ? TryCount(ref state.Subscriptions, state.MaxSubscriptions, LimitRefusals.AppSubscriptions, app, "subscriptions on this node (Relay:Ingress:AppLimits); unsubscribe first")
        : null;

    /// <summary>A subscription counted in by <see cref="TrySubscribe"/> ended.</summary>
    public void Unsubscribed(string app)
    {
        if (For(app) is { MaxSubscriptions: > 0 } state)
        {
            Interlocked.Decrement(ref state.Subscriptions);
        }
    }

    /// <summary>Whether <paramref name="app"/> has a subscription limit (a subscription is counted only then).</summary>
    public bool CountsSubscriptions(string app) => For(app) is { MaxSubscriptions: > 0 };

    /// <summary>Connections and subscriptions of <paramref name="app"/> counted now (the counts a limit is set for; else 0).</summary>
    internal (int Connections, int Subscriptions) CountsOf(string app) =>
        For(app) is { } state ? (Volatile.Read(ref state.Connections), Volatile.Read(ref state.Subscriptions)) : (0, 0);

    // Counts one in below max, or refuses it (counted as refused by reason, not counted in).
    private RelayError? TryCount(ref int count, int max, string reason, string app, string what)
    {
        if (Interlocked.Increment(ref count) <= max)
        {
            return null;
        }

        Interlocked.Decrement(ref count);
        _refusals.Add(reason);
        return new RelayError(ErrorCodes.RateLimited, $"app '{app}' holds its limit of {max} {what}");
    }

    private static bool IsSet(AppLimitSettings settings) =>
        settings.MaxConnections > 0 || settings.MaxClusterConnections > 0 || settings.PublishRatePerSecond > 0 || settings.MaxSubscriptions > 0;

    // Apps come from verified credentials, so the table holds at most the configured apps.
    private AppState? For(string app) => _any ? _apps.GetOrAdd(app, _create) : null;

    private AppState Create(string app)
    {
        var own = _options.Apps.GetValueOrDefault(app);
        var defaults = _options.Defaults;
        var rate = own?.PublishRatePerSecond ?? defaults.PublishRatePerSecond ?? 0;
        var burst = own?.PublishBurst ?? defaults.PublishBurst ?? 0;
        return new AppState(
            own?.MaxConnections ?? defaults.MaxConnections ?? 0,
            own?.MaxClusterConnections ?? defaults.MaxClusterConnections ?? 0,
            own?.MaxSubscriptions ?? defaults.MaxSubscriptions ?? 0,
            rate,
            rate > 0 ? new TokenBucket(rate, burst > 0 ? burst : rate * 2, _time.GetTimestamp()) : null);
    }

    private sealed class AppState(int maxConnections, int maxClusterConnections, int maxSubscriptions, int publishRate, TokenBucket? publishes)
    {
        public int Connections;
        public int Subscriptions;

        public int MaxConnections { get; } = maxConnections;

        public int MaxClusterConnections { get; } = maxClusterConnections;

        public int MaxSubscriptions { get; } = maxSubscriptions;

        public int PublishRate { get; } = publishRate;

        public TokenBucket? Publishes { get; } = publishes;
    }
}
