using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace Relay.Redis.Internal;

/// <summary>
/// The <c>Relay.Redis</c> meter of one <see cref="IMeterFactory"/>, shared by every connection given that factory:
/// one set of instruments (so an exporter sees each name once), series tagged <c>connection</c> = <c>command</c>
/// or <c>subscriber</c>. Counts are read from <see cref="RedisRoleMetrics"/> fields when the instruments are observed.
/// </summary>
internal sealed class RedisMetrics
{
    public const string MeterName = "Relay.Redis";

    /// <summary>The <c>kind</c> tag values, indexed by <see cref="RedisErrorKind"/>.</summary>
    public static readonly string[] ErrorKindNames = ["error_reply", "timeout", "connection_lost", "connect_failed", "protocol"];

    private static readonly ConditionalWeakTable<IMeterFactory, RedisMetrics> s_byFactory = [];

    private readonly RedisRoleMetrics[] _roles;

    private RedisMetrics(IMeterFactory factory)
    {
        var meter = factory.Create(MeterName);
        var roundTrip = meter.CreateHistogram<double>("relay.redis.round_trip", unit: "s", description: "Redis commands from the call to the reply (including any wait for a reconnect).");
        Command = new RedisRoleMetrics("command", roundTrip);
        Subscriber = new RedisRoleMetrics("subscriber", roundTrip);
        _roles = [Command, Subscriber];
        meter.CreateObservableCounter("relay.redis.commands", () => Observe(static r => r.Commands), description: "Commands written to Redis (handshake and SUBSCRIBE commands included).");
        meter.CreateObservableCounter("relay.redis.errors", ObserveErrors, description: "Redis error replies, timeouts, lost connections, failed connects and protocol errors, by kind.");
        meter.CreateObservableCounter("relay.redis.reconnects", () => Observe(static r => r.Reconnects), description: "Redis connections re-established after a loss.");
        meter.CreateObservableGauge("relay.redis.connected", () => Observe(static r => r.Connected), description: "Redis connections that are connected now (1 per connected connection, 0 while reconnecting).");
    }

    public RedisRoleMetrics Command { get; }

    public RedisRoleMetrics Subscriber { get; }

    /// <summary>The metrics of <paramref name="options"/>' meter factory; null (nothing recorded) when it has none.</summary>
    public static RedisMetrics? For(RedisConnectionOptions options) =>
        options.MeterFactory is { } factory ? s_byFactory.GetValue(factory, static f => new RedisMetrics(f)) : null;

    private IEnumerable<Measurement<long>> Observe(Func<RedisRoleMetrics, long> read)
    {
        foreach (var role in _roles)
        {
            if (role.Used)
            {
                yield return new Measurement<long>(read(role), role.Tag);
            }
        }
    }

    private IEnumerable<Measurement<long>> ObserveErrors()
    {
        foreach (var role in _roles)
        {
            if (!role.Used)
            {
                continue;
            }

            // Zeros too, so a rate over the first error has a starting point.
            for (var kind = 0; kind < ErrorKindNames.Length; kind++)
            {
                yield return new Measurement<long>(role.Errors(kind), role.Tag, new KeyValuePair<string, object?>("kind", ErrorKindNames[kind]));
            }
        }
    }
}
