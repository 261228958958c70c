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
    // KEYS: a key of the channel whose master must publish (only routes the call; none: any master). ARGV: fan-out
    // channel, frame.
    private static readonly RedisLuaScript s_announce = new("""
        redis.call('PUBLISH', ARGV[1], ARGV[2])
        return 0
        """);

    // KEYS: interest hash. ARGV: field, subscribers, ttlMs, change frame, fan-out channel.
    private static readonly RedisLuaScript s_interest = new("""
        if tonumber(ARGV[2]) > 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
        redis.call('PUBLISH', ARGV[5], ARGV[4])
        return 0
        """);

    // KEYS: interest hash. ARGV: ttlMs, reset frame, fan-out channel, then field, subscribers, change frame for every entry.
    private static readonly RedisLuaScript s_replaceInterest = new("""
        redis.call('DEL', KEYS[1])
        redis.call('PUBLISH', ARGV[3], ARGV[2])
        for i = 4, #ARGV, 3 do
          redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
          redis.call('PUBLISH', ARGV[3], ARGV[i + 2])
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
                var frame = BusCodec.EncodeInterest(latest);
                write = s_interest.EvaluateAsync(
                    Database,
                    [RedisKeys.InterestOf(change.NodeId)],
                    [change.App + "\n" + change.ChannelOrPattern, latest.Subscribers, (long)_options.NodeTtl.TotalMilliseconds, frame, RedisKeys.FanOutName]);
                if (_isCluster)
                {
                    announced = Core.Channels.ChannelName.IsPattern(change.ChannelOrPattern)
                        ? AnnounceOnEveryMasterAsync(frame)
                        : s_announce.EvaluateAsync(Database, [RedisKeys.Position(RedisKeys.ChannelPrefix(change.App, change.ChannelOrPattern))], [RedisKeys.FanOutName, frame]);
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

    // Replaces what Redis and fan-out hold for a node with what it knows: fan-out first forgets the node, then gets
    // every entry, all published by one script (so nothing else comes in between). In Cluster a channel's messages may
    // reach fan-out before its entry here (another master): the node checks its channels after (RedisBus.Nodes.cs).
    // The snapshot and the write happen under _interestOrder, as does every single change's write (commands go out in
    // call order): a change missing from the snapshot is written after it, never before it, where the reset would undo it.
    private Task ReplaceInterestAsync(string nodeId)
    {
        var known = _nodeInterest.GetOrAdd(nodeId, static _ => new());
        lock (_interestOrder)
        {
            var args = new List<RedisValue> { (long)_options.NodeTtl.TotalMilliseconds, BusCodec.EncodeInterest(new InterestChange(nodeId, "", "", -1)), RedisKeys.FanOutName };
            foreach (var ((app, channel), subscribers) in known)
            {
                args.Add(app + "\n" + channel);
                args.Add(subscribers);
                args.Add(BusCodec.EncodeInterest(new InterestChange(nodeId, app, channel, subscribers)));
            }

            return s_replaceInterest.EvaluateAsync(Database, [RedisKeys.InterestOf(nodeId)], [.. args]);
        }
    }

    // A pattern's change in Cluster: every master says it, each in order with its own channels' messages.
    private Task AnnounceOnEveryMasterAsync(byte[] frame)
    {
        var calls = new List<Task>();
        foreach (var server in _multiplexer!.GetServers())
        {
            if (!server.IsReplica && server.IsConnected)
            {
                calls.Add(s_announce.EvaluateOnAsync(server, [RedisKeys.FanOutName, frame]));
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

    // Every live node's interest: (node, [(app, channel, subscribers)]).
    private async Task<List<(string Node, List<(string App, string Channel, int Subscribers)> Interest)>> LoadInterestAsync()
    {
        var nodes = await Database.SortedSetRangeByRankAsync(RedisKeys.Nodes).ConfigureAwait(false);
        var result = new List<(string, List<(string, string, int)>)>();
        foreach (var id in nodes)
        {
            var fields = await Database.HashGetAllAsync(RedisKeys.InterestOf(id!)).ConfigureAwait(false);
            var interest = new List<(string, string, int)>(fields.Length);
            foreach (var entry in fields)
            {
                var field = (string)entry.Name!;
                var split = field.IndexOf('\n', StringComparison.Ordinal);
                if (split > 0)
                {
                    interest.Add((field[..split], field[(split + 1)..], (int)(long)entry.Value));
                }
            }

            result.Add((id!, interest));
        }

        return result;
    }
}
