using System.Globalization;
using Relay.Bus.FanOut;
using Relay.Core.Channels;
using Relay.Core.Messages;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Sharded fan-out: channels are spread over Relay:Redis:Shards fan-out shards (the routing shard function). Routing's
// append script publishes each message on its shard's fan-out channel in seq order, and nodes' interest changes go out on
// the same channel (a JSON object where a message starts with its seq; a pattern's on every shard's channel), so a shard's
// fan-out handles them in the order Redis ran them: a node's interest is known before any message sequenced after it.
// Fan-out processes share the shards by lease, as routing instances do theirs (a fair share each, renewed every third of
// Relay:Redis:FanOutLeaseTtl); each subscribes only to the channels of the shards it holds. On taking shards it loads
// their interest and asks nodes to resync those shards' channels; a process whose lease lapsed stops delivering them.
// The holder of shard 0 also sweeps nodes whose heartbeat stopped.
public sealed partial class RedisBus
{
    // Bytes of a shard's messages held while its lease has lapsed here, until the next renewal: 4 MiB is ~16,000 frames
    // of 250 bytes, seconds of a busy shard, and 64 of the largest (64 KiB), so 16 shards hold at most 64 MiB whatever the
    // message size (a count bound let 10,000 large messages hold 640 MB per shard); past it they are dropped and nodes
    // read them back from history when the shard is resynced.
    private const int MaxHeldBytesPerShard = 4 * 1024 * 1024;

    // Marks a node-gone announcement (an interest change's count): fan-out processes close the node's outbox.
    private const int NodeGone = -2;

    // KEYS: nodes. ARGV: ttlMs, interest key prefix. Removes nodes whose heartbeat stopped, with their interest hash;
    // returns {node, field...} for each (the fields, so their channels' fan-out shards can be told).
    private static readonly RedisLuaScript s_sweepNodes = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
        local swept = {}
        for _, node in ipairs(dead) do
          redis.call('ZREM', KEYS[1], node)
          local entry = {node}
          for _, field in ipairs(redis.call('HKEYS', ARGV[2] .. node)) do entry[#entry + 1] = field end
          redis.call('DEL', ARGV[2] .. node)
          swept[#swept + 1] = entry
        end
        return swept
        """);

    // KEYS: the swept node's interest hash. ARGV: shard count n, the n fan-out channels, the node-gone frame, then for
    // each entry it had: a 0-subscribers frame and its shard (-1: every channel). Skipped when the node wrote its interest
    // again meanwhile (it came back under the same id: its own announcements hold).
    private static readonly RedisLuaScript s_announceGone = new("""
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        local n = tonumber(ARGV[1])
        for c = 2, 1 + n do redis.call('PUBLISH', ARGV[c], ARGV[2 + n]) end
        for i = 3 + n, #ARGV, 2 do
          local shard = tonumber(ARGV[i + 1])
          if shard < 0 then
            for c = 2, 1 + n do redis.call('PUBLISH', ARGV[c], ARGV[i]) end
          else
            redis.call('PUBLISH', ARGV[2 + shard], ARGV[i])
          end
        end
        return 1
        """);

    private readonly RedisKey[] _fanOutLeaseKeys;
    private readonly string[] _fanOutChannelNames;
    private readonly RedisChannel[] _fanOutChannels;

    // Per shard: until when this process's lease surely holds, and what arrived after that, held until the next renewal.
    private readonly FanOutShard[] _fanOutShards;

    // A pattern's interest comes on every held shard's channel, each handled in its own queue: per (node, app, pattern)
    // the last count each shard's channel gave. The handler gets the highest, so a message never misses a node that its
    // own shard's channel announced; another channel lagging behind can only add a delivery the node has no taker for.
    private readonly Dictionary<(string Node, string App, string Pattern), int[]> _patternCounts = [];
    private readonly Lock _patternGate = new();

    // Set when the subscription connection comes back: the fan-out loop reloads its shards' interest and asks nodes to resync.
    private int _fanOutReload = 1;

    // Counts the subscription connection's returns: each node loop then confirms its channel and checks its channels.
    private int _subscriptionRestores;

    private long _fencedDeliveries;

    // Fan-out shards whose lease this process holds (not counting those it gave back and still delivers for a while).
    private int _fanOutShardsHeld;

    /// <summary>Messages this process did not deliver because its lease on their shard had lapsed or was given up.</summary>
    public long FencedDeliveries => Interlocked.Read(ref _fencedDeliveries);

    private void OnSubscriptionLost() => CloseReplyGate();

    private void OnSubscriptionBack()
    {
        Volatile.Write(ref _fanOutReload, 1);
        Interlocked.Increment(ref _subscriptionRestores);
        _metrics.SubscriptionsRestored();
        OpenReplyGate();
    }

    /// <inheritdoc />
    public async ValueTask PublishSequencedAsync(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        await ReadyAsync().ConfigureAwait(false);
        await Database.PublishAsync(_fanOutChannels[ShardOf(message.App, message.Channel)], BusCodec.EncodeSequenced(message)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public IDisposable ServeFanOut(IFanOutHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Serve(stopping => FanOutLoopAsync(handler, stopping));
    }

    // A frame on a held shard's channel, in that channel's order, from the subscription made in `generation`.
    private void OnFanOutFrame(IFanOutHandler handler, int shard, int generation, ReadOnlyMemory<byte> frame)
    {
        var state = _fanOutShards[shard];

        // A subscription's queue is still handled after it was dropped: a frame of a subscription from before the shard
        // was last given up (queued behind a slow or paused handler, then the lease lapsed and another process fanned its
        // messages out) must not count as the shard's again once it is taken back. The lease is read before the
        // generation, so a lease taken back after the frame's subscription was dropped is always seen with its new
        // generation.
        var validUntil = Volatile.Read(ref state.ValidUntil);
        var current = generation == Volatile.Read(ref state.Generation);
        if (frame.IsEmpty || frame.Span[0] != (byte)'{')
        {
            if (!current)
            {
                Interlocked.Increment(ref _fencedDeliveries);
                return;
            }

            if (_time.GetTimestamp() < validUntil)
            {
                Forget(handler.OnSequencedAsync(BusCodec.DecodeSequenced(frame)));
                return;
            }

            // Past the lease this process renewed last: another process may hold the shard by now. Held until the next
            // renewal says (delivered in order, under the gate, if the shard is still this process's); dropped for a
            // shard given up or past the bound (nodes read the messages back from history when this one resyncs).
            lock (state.Gate)
            {
                if (generation != state.Generation)
                {
                    Interlocked.Increment(ref _fencedDeliveries);
                }
                else if (state.ValidUntil != 0 && _time.GetTimestamp() < state.ValidUntil)
                {
                    Forget(handler.OnSequencedAsync(BusCodec.DecodeSequenced(frame)));
                }
                else if (state.ValidUntil != 0 && state.HeldBytes + frame.Length <= MaxHeldBytesPerShard)
                {
                    state.Held.Add(frame.ToArray());
                    state.HeldBytes += frame.Length;
                }
                else
                {
                    Interlocked.Increment(ref _fencedDeliveries);
                }
            }

            return;
        }

        // Interest stays current while the shard is held, lapsed or not (a renewal resumes from it); a frame still queued
        // for a shard given up is ignored, its next holder loads the interest itself (and so does this process, should it
        // take the shard back: an older change applied after that load would undo a newer one).
        if (validUntil == 0 || !current)
        {
            return;
        }

        var change = BusCodec.DecodeInterest(frame);
        if (change.Subscribers == NodeGone)
        {
            if (_outboxes.TryRemove(change.NodeId, out var outbox))
            {
                outbox.Complete();
            }
        }
        else if (change.Subscribers >= 0)
        {
            ApplyInterest(handler, shard, change);
        }
    }

    private void ApplyInterest(IFanOutHandler handler, int shard, InterestChange change)
    {
        if (!ChannelName.IsPattern(change.ChannelOrPattern))
        {
            Forget(handler.OnInterestAsync(change));
            return;
        }

        lock (_patternGate)
        {
            var key = (change.NodeId, change.App, change.ChannelOrPattern);
            if (!_patternCounts.TryGetValue(key, out var counts))
            {
                if (change.Subscribers == 0)
                {
                    return;
                }

                _patternCounts[key] = counts = new int[_fanOutChannelNames.Length];
            }

            var before = counts.Max();
            counts[shard] = change.Subscribers;
            ForwardPattern(handler, key, counts, before);
        }
    }

    // Under _patternGate: tells the handler a pattern's count when its highest changed; forgets an entry all shards cleared.
    private void ForwardPattern(IFanOutHandler handler, (string Node, string App, string Pattern) key, int[] counts, int before)
    {
        var after = counts.Max();
        if (after == 0)
        {
            _patternCounts.Remove(key);
        }

        if (after != before)
        {
            Forget(handler.OnInterestAsync(new InterestChange(key.Node, key.App, key.Pattern, after)));
        }
    }

    // Forgets what this process knew of the interest in shards it gave up.
    private void ForgetShards(IFanOutHandler handler, HashSet<int> shards)
    {
        Forget(handler.OnChannelsLeftAsync((app, channel) => shards.Contains(ShardOf(app, channel))));
        lock (_patternGate)
        {
            foreach (var (key, counts) in _patternCounts.ToList())
            {
                var before = counts.Max();
                foreach (var shard in shards)
                {
                    counts[shard] = 0;
                }

                ForwardPattern(handler, key, counts, before);
            }
        }
    }

    private async Task FanOutLoopAsync(IFanOutHandler handler, CancellationToken stoppingToken)
    {
        var ttl = _options.FanOutLeaseTtl;
        var ttlTicks = (long)(ttl.TotalSeconds * _time.TimestampFrequency);
        // Routing's lease script, with fencing tokens of fan-out's own: a shard's token changes when its lease is taken
        // anew, so a token that changed while this process held the shard (Redis lost the lease) reloads and resyncs it.
        RedisKey[] tickKeys = [RedisKeys.FanOuts, RedisKeys.FanOutFences, .. _fanOutLeaseKeys];
        var tokens = new Dictionary<int, string>();
        var held = new HashSet<int>();

        // Shards this process gave back while its lease on them held (the fair share moved to a joining process): still
        // subscribed and delivered for one more lease time, by when the taker (which takes at its next tick, a third of
        // the lease later) delivers them, so a rebalance leaves no moment without a holder. Both deliver meanwhile;
        // nodes drop the seqs they passed. (Before, a given-back shard had no holder until the taker's tick: up to a
        // second of its messages reached no node, more than history held at 800 messages/s a channel.)
        var releasing = new Dictionary<int, long>();
        try
        {
            await ReadyAsync().WaitAsync(stoppingToken).ConfigureAwait(false);
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    var started = _time.GetTimestamp();
                    var reply = (RedisResult[])(await s_leaseTick.EvaluateAsync(Database, tickKeys, [InstanceId, (long)ttl.TotalMilliseconds]).ConfigureAwait(false))!;
                    var owned = new HashSet<int>();
                    var retaken = new HashSet<int>();
                    for (var i = 0; i + 1 < reply.Length; i += 2)
                    {
                        var shard = (int)(long)reply[i];
                        var token = (string)reply[i + 1]!;
                        owned.Add(shard);
                        if (held.Contains(shard) && tokens.TryGetValue(shard, out var before) && before != token)
                        {
                            retaken.Add(shard);
                        }

                        tokens[shard] = token;
                    }

                    // A reply that came back after the lease it renewed had run out (this process was paused or
                    // starved while it was on its way) proves nothing about the time between: every shard counts as
                    // lapsed, as when the lease ran out before the renewal was sent.
                    var stale = started + ttlTicks <= _time.GetTimestamp();

                    // Not owned any more: given back while the lease held (kept a while, above), or lost (the lease had
                    // run out here, another process may have delivered them for seconds: stop now).
                    var gone = held.Where(s => !owned.Contains(s)).ToHashSet();
                    var lost = new HashSet<int>();
                    foreach (var shard in gone)
                    {
                        held.Remove(shard);
                        if (!stale && Volatile.Read(ref _fanOutShards[shard].ValidUntil) > started)
                        {
                            Renew(handler, shard, started + ttlTicks);
                            releasing[shard] = started + ttlTicks;
                        }
                        else
                        {
                            lost.Add(shard);
                        }
                    }

                    // Given-back shards taken again, or whose keeping time is over.
                    foreach (var (shard, until) in releasing.ToList())
                    {
                        if (owned.Contains(shard))
                        {
                            releasing.Remove(shard);
                        }
                        else if (until <= _time.GetTimestamp() || stale)
                        {
                            releasing.Remove(shard);
                            lost.Add(shard);
                        }
                    }

                    foreach (var shard in lost)
                    {
                        Renew(handler, shard, 0);
                        await UnsubscribeAsync(_fanOutChannels[shard]).ConfigureAwait(false);
                    }

                    if (lost.Count > 0)
                    {
                        ForgetShards(handler, lost);
                        LogFanOutShardsLost(_logger, Describe(lost), InstanceId);
                    }

                    // Taken anew while held here (the lease lapsed in Redis: another process may have held the shard
                    // meanwhile): dropped as a lost one is, so that neither what it held nor what its subscription still
                    // brings from before (a paused process reads seconds of it) is fanned out, then taken again below.
                    foreach (var shard in retaken)
                    {
                        Renew(handler, shard, 0);
                        await UnsubscribeAsync(_fanOutChannels[shard]).ConfigureAwait(false);
                    }

                    // New shards; after a reconnect every held one (messages and changes were missed); and a shard whose
                    // lease lapsed here before this renewal (its messages were dropped meanwhile).
                    var reload = Interlocked.Exchange(ref _fanOutReload, 0) == 1;
                    var lapsed = held.Where(s => owned.Contains(s) && (stale || retaken.Contains(s) || Volatile.Read(ref _fanOutShards[s].ValidUntil) <= started)).ToHashSet();
                    var taken = owned.Where(s => !held.Contains(s) || reload || lapsed.Contains(s)).ToHashSet();
                    if (lapsed.Count > 0)
                    {
                        LogFanOutLeaseLapsed(_logger, Describe(lapsed));
                        _metrics.FanOutLeasesLapsed(lapsed.Count);
                    }

                    // Loaded on top of what the handler knows (not cleared first: a message meanwhile would miss nodes).
                    foreach (var shard in owned)
                    {
                        Renew(handler, shard, started + ttlTicks);
                    }

                    if (taken.Count > 0)
                    {
                        await TakeShardsAsync(handler, held, taken).ConfigureAwait(false);
                    }

                    Volatile.Write(ref _fanOutShardsHeld, held.Count);

                    // One sweeper: the holder of shard 0. The sweep script removes each dead node once, whoever runs it.
                    if (owned.Contains(0))
                    {
                        await SweepNodesAsync().ConfigureAwait(false);
                    }
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    // Redis is away: the leases run out here as there. A take cut short (shards subscribed, their interest
                    // not loaded or nodes not told) is done again for every held shard at the next successful tick.
                    Volatile.Write(ref _fanOutReload, 1);
                    LogFanOutLeaseFailed(_logger, e.Message);
                }

                await Task.Delay(ttl / 3, _time, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }

        Volatile.Write(ref _fanOutShardsHeld, 0);
        foreach (var shard in held.Concat(releasing.Keys))
        {
            Renew(handler, shard, 0);
            await IgnoreFailure(UnsubscribeAsync(_fanOutChannels[shard])).ConfigureAwait(false);
        }

        // Given back at once: the others take the shards at their next tick instead of after the lease time.
        if (_database is not null)
        {
            await IgnoreFailure(s_leaseRelease.EvaluateAsync(_database, tickKeys, [InstanceId])).ConfigureAwait(false);
        }
    }

    // Subscribes to the taken shards' channels, then loads their interest (so a change after the load is not missed),
    // then asks nodes to check those shards' channels: what was sequenced before this process listened is read from history.
    private async Task TakeShardsAsync(IFanOutHandler handler, HashSet<int> held, HashSet<int> taken)
    {
        foreach (var shard in taken)
        {
            if (!_subscriptions.ContainsKey(_fanOutChannels[shard]))
            {
                var generation = Volatile.Read(ref _fanOutShards[shard].Generation);
                await SubscribeAsync(_fanOutChannels[shard], frame => OnFanOutFrame(handler, shard, generation, frame)).ConfigureAwait(false);
            }

            held.Add(shard);
        }

        var patterns = new List<InterestChange>();
        foreach (var (node, interest) in await LoadInterestAsync((app, channel) => ChannelName.IsPattern(channel) || taken.Contains(ShardOf(app, channel))).ConfigureAwait(false))
        {
            foreach (var (app, channel, subscribers) in interest)
            {
                var change = new InterestChange(node, app, channel, subscribers);
                if (ChannelName.IsPattern(channel))
                {
                    patterns.Add(change);
                }
                else
                {
                    await handler.OnInterestAsync(change).ConfigureAwait(false);
                }
            }
        }

        foreach (var change in patterns)
        {
            foreach (var shard in taken)
            {
                ApplyInterest(handler, shard, change);
            }
        }

        await Subscriber.PingAsync().ConfigureAwait(false);
        await Database.PublishAsync(RedisKeys.Resync, "fanout:" + Describe(taken)).ConfigureAwait(false);
        LogFanOutShardsTaken(_logger, Describe(taken), InstanceId);
    }

    private async Task SweepNodesAsync()
    {
        var ttlMs = (long)_options.NodeTtl.TotalMilliseconds;
        var swept = (RedisResult[])(await s_sweepNodes.EvaluateAsync(Database, [RedisKeys.Nodes], [ttlMs, RedisKeys.InterestKeyPrefix]).ConfigureAwait(false))!;
        foreach (var item in swept)
        {
            var entry = (RedisResult[])item!;
            var id = (string)entry[0]!;

            // Every fan-out process forgets the node's interest from its shards' channels; this one closes its outbox too.
            var args = new List<RedisValue> { _fanOutChannelNames.Length };
            foreach (var name in _fanOutChannelNames)
            {
                args.Add(name);
            }

            args.Add(BusCodec.EncodeInterest(new InterestChange(id, "", "", NodeGone)));
            for (var i = 1; i < entry.Length; i++)
            {
                if (SplitField((string)entry[i]!) is var (app, channel))
                {
                    args.Add(BusCodec.EncodeInterest(new InterestChange(id, app, channel, 0)));
                    args.Add(FanOutShardOf(app, channel));
                }
            }

            // The zeros reach this process through its shards' channels like any other change: the handler's OnNodeGone
            // would also clear what a node that came back under the same id registered since.
            await s_announceGone.EvaluateAsync(Database, [RedisKeys.InterestOf(id)], [.. args]).ConfigureAwait(false);
            var members = await Presence.EvictNodeAsync(id, _fanOutChannelNames[0]).ConfigureAwait(false);
            if (_outboxes.TryRemove(id, out var outbox))
            {
                outbox.Complete();
            }

            LogNodeGone(_logger, id, members);
        }
    }

    // Sets how long the lease on a shard surely holds (0: given up). Under the shard's gate, so the messages held while it
    // had lapsed go out first, in order, when it is still this process's, and are dropped when not, or when the renewal
    // itself has run out already (a reply that arrived late: another process may have held the shard meanwhile). A
    // lease taken anew (its token changed) is given up first (0), so what it held is dropped: another process may have
    // fanned those messages out; the shard's resync has nodes read them back from history.
    private void Renew(IFanOutHandler handler, int shard, long validUntil)
    {
        var state = _fanOutShards[shard];
        var deliver = validUntil != 0 && validUntil > _time.GetTimestamp();
        lock (state.Gate)
        {
            foreach (var frame in state.Held)
            {
                if (deliver)
                {
                    Forget(handler.OnSequencedAsync(BusCodec.DecodeSequenced(frame)));
                }
                else
                {
                    Interlocked.Increment(ref _fencedDeliveries);
                }
            }

            state.Held.Clear();
            state.HeldBytes = 0;
            if (validUntil == 0)
            {
                // Given up (its subscription is dropped next): what that subscription still has queued is fenced.
                Volatile.Write(ref state.Generation, state.Generation + 1);
            }

            Volatile.Write(ref state.ValidUntil, validUntil);
        }
    }

    // "1,5,9": shards for log lines and the resync announcement (nodes parse it: ParseShards).
    private static string Describe(IEnumerable<int> shards) =>
        string.Join(',', shards.Order().Select(static s => s.ToString(CultureInfo.InvariantCulture)));

    // The shards of a resync announcement ("fanout:1,5,9"), or null for every channel (any other text).
    private static HashSet<int>? ParseShards(ReadOnlyMemory<byte> announcement)
    {
        var text = System.Text.Encoding.UTF8.GetString(announcement.Span);
        if (!text.StartsWith("fanout:", StringComparison.Ordinal))
        {
            return null;
        }

        var shards = new HashSet<int>();
        foreach (var part in text["fanout:".Length..].Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var shard))
            {
                return null;
            }

            shards.Add(shard);
        }

        return shards;
    }

    private sealed class FanOutShard
    {
        // TimeProvider timestamp until which the lease surely holds (renewal sent + lease time); 0: not held here.
        public long ValidUntil;

        public readonly Lock Gate = new();

        public readonly List<byte[]> Held = [];

        // The bytes in Held (under Gate).
        public long HeldBytes;

        // Counts the times the shard was given up here (under Gate): a subscription's frames count only while it is the
        // generation the subscription was made in.
        public int Generation;
    }
}
