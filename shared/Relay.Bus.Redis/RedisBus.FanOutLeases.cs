using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Fan-out's shard leases for a bus that brings fan-out its messages itself (the Dapr bus, whose fan-out instances read
// every shard's messages from a topic and pass on only the shards they lease): the lease script and keys of the Redis
// bus's own fan-out loop (RedisBus.FanOut.cs), so both buses share fan-out out the same way. Additive: nothing here
// changes that loop.
public sealed partial class RedisBus
{
    /// <summary>
    /// Renews this process's fan-out shard leases once, with the script the Redis bus's fan-out loop runs: the process is
    /// registered among the live fan-out processes (<see cref="RedisKeys.FanOuts"/>), keeps a fair share (shards / live
    /// processes, rounded up), gives back what exceeds it and takes free shards up to it, each lasting
    /// <see cref="RedisBusOptions.FanOutLeaseTtl"/> from now. Call it every third of that time. Returns the shards held
    /// now. Not for a process that also runs <see cref="ServeFanOut"/>.
    /// </summary>
    public async Task<IReadOnlySet<int>> RenewFanOutLeasesAsync()
    {
        await ReadyAsync().ConfigureAwait(false);
        var reply = (RedisResult[])(await s_leaseTick.EvaluateAsync(Database, FanOutTickKeys(), [InstanceId, (long)_options.FanOutLeaseTtl.TotalMilliseconds]).ConfigureAwait(false))!;
        var owned = new HashSet<int>();
        for (var i = 0; i + 1 < reply.Length; i += 2)
        {
            owned.Add((int)(long)reply[i]);
        }

        return owned;
    }

    /// <summary>Gives back every fan-out lease this process holds (others take the shards at their next renewal) and leaves the live set.</summary>
    public async Task ReleaseFanOutLeasesAsync()
    {
        if (_database is not null)
        {
            await IgnoreFailure(s_leaseRelease.EvaluateAsync(_database, FanOutTickKeys(), [InstanceId])).ConfigureAwait(false);
        }
    }

    private RedisKey[] FanOutTickKeys() => [RedisKeys.FanOuts, RedisKeys.FanOutFences, .. _fanOutLeaseKeys];
}
