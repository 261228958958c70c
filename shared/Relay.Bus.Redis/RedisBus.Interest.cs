using System.Collections.Concurrent;
using Relay.Bus.FanOut;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Interest: each node keeps which channels it wants in a hash of its own (expiring with its heartbeat) and announces each
// change on the fan-out channel, in order with the sequenced messages (see RedisBus.FanOut.cs).
public sealed partial class RedisBus
{
    // KEYS: interest hash. ARGV: field, subscribers, ttlMs, change frame, then the fan-out channels to announce it on
    // (the channel's shard's; every shard's for a pattern).
    private static readonly RedisLuaScript s_interest = new("""
        if tonumber(ARGV[2]) > 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
        for i = 5, #ARGV do redis.call('PUBLISH', ARGV[i], ARGV[4]) end
        return 0
        """);

    // KEYS: interest hash. ARGV: ttlMs, shard count n, the n fan-out channels in shard order, then for every entry: field,
    // subscribers, change frame, shard (-1: a pattern, announced on every channel). An entry with 0 subscribers is only
    // announced: a count the hash held that the node no longer has.
    private static readonly RedisLuaScript s_replaceInterest = new("""
        local n = tonumber(ARGV[2])
        redis.call('DEL', KEYS[1])
        for i = 3 + n, #ARGV, 4 do
          if tonumber(ARGV[i + 1]) > 0 then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
          local shard = tonumber(ARGV[i + 3])
          if shard < 0 then
            for c = 3, 2 + n do redis.call('PUBLISH', ARGV[c], ARGV[i + 2]) end
          else
            redis.call('PUBLISH', ARGV[3 + shard], ARGV[i + 2])
          end
        end
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
        return 0
        """);

    private readonly ConcurrentDictionary<string, ConcurrentDictionary<(string App, string Channel), int>> _nodeInterest = new(StringComparer.Ordinal);

    // Orders interest writes against whole-interest replacements (see ReplaceInterestAsync).
    private readonly Lock _interestOrder = new();
    private readonly ConcurrentDictionary<string, bool> _interestStale = new(StringComparer.Ordinal);

    /// <inheritdoc />
    public async ValueTask SendInterestAsync(InterestChange change)
    {
        ArgumentNullException.ThrowIfNull(change);
        // Callers hand changes over in the order their counts were computed (the ingress node gates each channel), and
        // this part runs before the first wait, so what the node knows is always its latest count.
        var known = _nodeInterest.GetOrAdd(change.NodeId, static _ => new());
        var key = (change.App, change.ChannelOrPattern);
        if (change.Subscribers > 0)
        {
            known[key] = change.Subscribers;
        }
        else
        {
            known.TryRemove(key, out _);
        }

        await ReadyAsync().ConfigureAwait(false);
        try
        {
            // Written in the order of ReplaceInterestAsync's snapshots (see there), and with the latest count rather
            // than this call's: calls that waited for Redis to be ready may resume in any order.
            Task write;
            lock (_interestOrder)
            {
                var latest = change with { Subscribers = known.GetValueOrDefault(key) };
                var shard = FanOutShardOf(change.App, change.ChannelOrPattern);
                RedisValue[] args = shard < 0 ? new RedisValue[4 + _fanOutChannelNames.Length] : new RedisValue[5];
                args[0] = change.App + "\n" + change.ChannelOrPattern;
                args[1] = latest.Subscribers;
                args[2] = (long)_options.NodeTtl.TotalMilliseconds;
                args[3] = BusCodec.EncodeInterest(latest);
                for (var i = 4; i < args.Length; i++)
                {
                    args[i] = _fanOutChannelNames[shard < 0 ? i - 4 : shard];
                }

                write = s_interest.EvaluateAsync(Database, [RedisKeys.InterestOf(change.NodeId)], args);
            }

            await write.ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            // The node's own index is what counts: the next heartbeat writes the node's whole interest again. (A
            // subscribe meanwhile fails on its position read; an unsubscribe or a close must never fail for this.)
            _interestStale[change.NodeId] = true;
            LogInterestFailed(_logger, change.NodeId, e.Message);
        }
    }

    // Replaces what Redis and fan-out hold for a node with what it knows, in one script: every entry it knows is written
    // and announced on its shard's fan-out channel, and every entry the hash held that it no longer knows is announced
    // with 0 subscribers there (so each shard's channel alone tells its fan-out process the node's whole interest in it).
    // The snapshot and the write happen under _interestOrder, as does every single change's write (commands go out in
    // call order): a change missing from the snapshot is written after it, never before it, where the snapshot would undo it.
    private async Task ReplaceInterestAsync(string nodeId)
    {
        var key = RedisKeys.InterestOf(nodeId);
        var held = await Database.HashKeysAsync(key).ConfigureAwait(false);
        var known = _nodeInterest.GetOrAdd(nodeId, static _ => new());
        Task write;
        lock (_interestOrder)
        {
            var args = new List<RedisValue> { (long)_options.NodeTtl.TotalMilliseconds, _fanOutChannelNames.Length };
            foreach (var name in _fanOutChannelNames)
            {
                args.Add(name);
            }

            void Add(string app, string channel, int subscribers)
            {
                args.Add(app + "\n" + channel);
                args.Add(subscribers);
                args.Add(BusCodec.EncodeInterest(new InterestChange(nodeId, app, channel, subscribers)));
                args.Add(FanOutShardOf(app, channel));
            }

            foreach (var ((app, channel), subscribers) in known)
            {
                Add(app, channel, subscribers);
            }

            foreach (var field in held)
            {
                if (SplitField(field!) is var (app, channel) && !known.ContainsKey((app, channel)))
                {
                    Add(app, channel, 0);
                }
            }

            write = s_replaceInterest.EvaluateAsync(Database, [key], [.. args]);
        }

        await write.ConfigureAwait(false);
    }

    // The fan-out shard an interest change goes to: its channel's, or -1 (every shard) for a pattern.
    private int FanOutShardOf(string app, string channelOrPattern) =>
        Core.Channels.ChannelName.IsPattern(channelOrPattern) ? -1 : ShardOf(app, channelOrPattern);

    // An interest hash field is "app\nchannel".
    private static (string App, string Channel)? SplitField(string field)
    {
        var split = field.IndexOf('\n', StringComparison.Ordinal);
        return split > 0 ? (field[..split], field[(split + 1)..]) : null;
    }

    // Computed from every node's interest hash, not asked of fan-out: with the shards split over several fan-out
    // processes none knows every channel, and the hashes are what each of them loads its own from anyway.
    /// <inheritdoc />
    public async ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken)
    {
        await ReadyAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
        var totals = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (node, interest) in await LoadInterestAsync().ConfigureAwait(false))
        {
            _ = node;
            foreach (var (channelApp, channel, subscribers) in interest)
            {
                if (channelApp == app && !Core.Channels.ChannelName.IsPattern(channel) && (prefix is null || channel.StartsWith(prefix, StringComparison.Ordinal)))
                {
                    totals[channel] = totals.GetValueOrDefault(channel) + subscribers;
                }
            }
        }

        return [.. totals.Select(static t => new ChannelCount(t.Key, t.Value)).OrderBy(static c => c.Channel, StringComparer.Ordinal)];
    }

    // Every live node's interest: (node, [(app, channel, subscribers)]), only the entries `keep` accepts when given.
    private async Task<List<(string Node, List<(string App, string Channel, int Subscribers)> Interest)>> LoadInterestAsync(Func<string, string, bool>? keep = null)
    {
        var nodes = await Database.SortedSetRangeByRankAsync(RedisKeys.Nodes).ConfigureAwait(false);
        var result = new List<(string, List<(string, string, int)>)>();
        foreach (var id in nodes)
        {
            var fields = await Database.HashGetAllAsync(RedisKeys.InterestOf(id!)).ConfigureAwait(false);
            var interest = new List<(string, string, int)>(fields.Length);
            foreach (var entry in fields)
            {
                if (SplitField((string)entry.Name!) is var (app, channel) && (keep is null || keep(app, channel)))
                {
                    interest.Add((app, channel, (int)(long)entry.Value));
                }
            }

            result.Add((id!, interest));
        }

        return result;
    }
}
