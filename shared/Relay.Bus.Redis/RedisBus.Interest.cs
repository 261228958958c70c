using System.Collections.Concurrent;
using Relay.Bus.FanOut;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Interest: each node keeps which channels it wants in a hash of its own (expiring with its heartbeat) and announces each
// change on the fan-out channel, in order with the sequenced messages (see RedisBus.FanOut.cs).
// Redis Cluster: a script's PUBLISH reaches the other nodes over the cluster bus, one link per master, so fan-out gets
// each master's frames in order but not the frames of two masters. The hash's master (the bus slot's) announces every
// change and every whole-interest replacement as on one server, one ordered log of the node's interest; a channel's change
// is announced by the channel's master as well (a pattern's by every master), in order with the messages that master
// publishes, so a message sequenced after a subscribe is never taken to fan-out before the interest that wants it.
// Counts are absolute, so fan-out applying a change twice is harmless (docs/distributed.md has what remains).
public sealed partial class RedisBus
{
    // KEYS: a key of the channel whose master must publish (only routes the call; none: any master). ARGV: frame, then
    // the fan-out channels to announce it on.
    private static readonly RedisLuaScript s_announce = new("""
        for i = 2, #ARGV do redis.call('PUBLISH', ARGV[i], ARGV[1]) end
        return 0
        """);

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
            Task announced = Task.CompletedTask;
            lock (_interestOrder)
            {
                var latest = change with { Subscribers = known.GetValueOrDefault(key) };
                var shard = FanOutShardOf(change.App, change.ChannelOrPattern);
                var channels = shard < 0 ? _fanOutChannelNames : [_fanOutChannelNames[shard]];
                var frame = BusCodec.EncodeInterest(latest);
                var args = new RedisValue[4 + channels.Length];
                args[0] = change.App + "\n" + change.ChannelOrPattern;
                args[1] = latest.Subscribers;
                args[2] = (long)_options.NodeTtl.TotalMilliseconds;
                args[3] = frame;
                for (var i = 0; i < channels.Length; i++)
                {
                    args[4 + i] = channels[i];
                }

                write = s_interest.EvaluateAsync(Database, [RedisKeys.InterestOf(change.NodeId)], args);
                if (_isCluster)
                {
                    RedisValue[] announce = [frame, .. channels.Select(static c => (RedisValue)c)];
                    announced = shard < 0
                        ? AnnounceOnEveryMasterAsync(announce)
                        : s_announce.EvaluateAsync(Database, [RedisKeys.Position(RedisKeys.ChannelPrefix(change.App, change.ChannelOrPattern))], announce);
                }
            }

            await Task.WhenAll(write, announced).ConfigureAwait(false);
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
    // In Cluster a channel's messages may reach fan-out before its entry here (another master): the node checks its
    // channels after (RedisBus.Nodes.cs).
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

    // A pattern's change in Cluster: every master says it, each in order with its own channels' messages.
    private Task AnnounceOnEveryMasterAsync(RedisValue[] announce)
    {
        var calls = new List<Task>();
        foreach (var server in _multiplexer!.GetServers())
        {
            if (!server.IsReplica && server.IsConnected)
            {
                calls.Add(s_announce.EvaluateOnAsync(server, announce));
            }
        }

        return Task.WhenAll(calls);
    }

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
