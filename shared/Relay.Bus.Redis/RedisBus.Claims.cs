using System.Globalization;
using System.Text;
using Relay.Bus.Claims;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Client-id claims across processes (IClientClaims): one script numbers a claim (INCR on RedisKeys.ClaimNumber, one
// order for the deployment) and publishes it on RedisKeys.Claims, which every process watching claims subscribes to
// (made again after a reconnect or a Sentinel move, like the bus's other channels). A frame is the claimer's instance
// id, the scope, the app and the client id, each as <length>:<text>, then a newline and the claim's number. A claim
// that ends the session (MQTT Clean Start 1) has "|end" after the instance id, inside its part: an older process reads
// the part as one claimer id, never its own, and acts on the claim as on any other.
public sealed partial class RedisBus
{
    private static readonly RedisLuaScript ClaimScript = new("""
        local n = redis.call('INCR', KEYS[1])
        redis.call('PUBLISH', ARGV[1], ARGV[2] .. '\n' .. n)
        return n
        """);

    /// <summary>After the instance id in a claim frame's first part: the claim ends the session the id had.</summary>
    private const string EndsSessionMark = "|end";

    private readonly Lock _claimWatchersGate = new();
    private Action<ClientClaim>[] _claimWatchers = [];

    /// <summary>Numbers and announces a claim of <paramref name="clientId"/> by this process (<see cref="IClientClaims.ClaimAsync"/>).</summary>
    internal async ValueTask<long> ClaimClientAsync(string scope, string app, string clientId, bool endsSession)
    {
        var frame = new StringBuilder();
        foreach (var part in (ReadOnlySpan<string>)[endsSession ? InstanceId + EndsSessionMark : InstanceId, scope, app, clientId])
        {
            frame.Append(part.Length.ToString(CultureInfo.InvariantCulture)).Append(':').Append(part);
        }

        var number = await ClaimScript.EvaluateAsync(Database, [RedisKeys.ClaimNumber], [RedisKeys.Claims.ToString(), frame.ToString()]).ConfigureAwait(false);
        return (long)number;
    }

    /// <summary>Calls <paramref name="watcher"/> with every claim another process makes (<see cref="IClientClaims.Watch"/>).</summary>
    internal IDisposable WatchClaims(Action<ClientClaim> watcher)
    {
        bool first;
        lock (_claimWatchersGate)
        {
            first = _claimWatchers.Length == 0;
            _claimWatchers = [.. _claimWatchers, watcher];
        }

        if (first)
        {
            Forget(new ValueTask(SubscribeOrLaterAsync(RedisKeys.Claims, OnClaimFrame)));
        }

        return new ClaimWatch(this, watcher);
    }

    private void OnClaimFrame(ReadOnlyMemory<byte> bytes)
    {
        if (ParseClaim(Encoding.UTF8.GetString(bytes.Span)) is not { } parsed || parsed.Claimer == InstanceId)
        {
            return;
        }

        foreach (var watcher in Volatile.Read(ref _claimWatchers))
        {
            watcher(parsed.Claim);
        }
    }

    /// <summary>A claim frame's parts, or null for a frame this version did not write.</summary>
    internal static (string Claimer, ClientClaim Claim)? ParseClaim(string frame)
    {
        var parts = new string[4];
        var at = 0;
        for (var i = 0; i < parts.Length; i++)
        {
            var colon = frame.IndexOf(':', at);
            if (colon < 0 || !int.TryParse(frame.AsSpan(at, colon - at), NumberStyles.None, CultureInfo.InvariantCulture, out var length) || colon + 1 + length > frame.Length)
            {
                return null;
            }

            parts[i] = frame.Substring(colon + 1, length);
            at = colon + 1 + length;
        }

        if (at >= frame.Length || frame[at] != '\n' || !long.TryParse(frame.AsSpan(at + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            return null;
        }

        var endsSession = parts[0].EndsWith(EndsSessionMark, StringComparison.Ordinal);
        return (endsSession ? parts[0][..^EndsSessionMark.Length] : parts[0], new ClientClaim(parts[1], parts[2], parts[3], number, endsSession));
    }

    private sealed class ClaimWatch(RedisBus bus, Action<ClientClaim> watcher) : IDisposable
    {
        public void Dispose()
        {
            lock (bus._claimWatchersGate)
            {
                bus._claimWatchers = [.. bus._claimWatchers.Where(w => !ReferenceEquals(w, watcher))];
            }
        }
    }
}

/// <summary>The Redis bus's <see cref="IClientClaims"/> (<c>AddRedis()</c> registers it, so the Dapr bus has it too).</summary>
internal sealed class RedisClientClaims(RedisBus bus) : IClientClaims
{
    public ValueTask<long> ClaimAsync(string scope, string app, string clientId, bool endsSession, CancellationToken cancellationToken) =>
        bus.ClaimClientAsync(scope, app, clientId, endsSession);

    public IDisposable Watch(Action<ClientClaim> claimedElsewhere) => bus.WatchClaims(claimedElsewhere);
}
