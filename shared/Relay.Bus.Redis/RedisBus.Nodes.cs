using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Ingress nodes: each node listens on its own channel for fan-out's batches and on the resync channel (for the shards a
// fan-out process took), and sends a
// heartbeat (which also keeps its interest hash alive) every third of the node TTL.
public sealed partial class RedisBus
{
    // KEYS: nodes, interest hash. ARGV: node, ttlMs. Returns 1 when the node was not registered (new, or Redis lost it).
    private static readonly RedisLuaScript s_heartbeat = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
        redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 2)
        return added
        """);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, INodeHandler> _nodes = new(StringComparer.Ordinal);

    /// <inheritdoc />
    public IDisposable ServeNode(string nodeId, INodeHandler handler)
    {
        ArgumentException.ThrowIfNullOrEmpty(nodeId);
        ArgumentNullException.ThrowIfNull(handler);
        if (nodeId.Contains('\n', StringComparison.Ordinal) || nodeId.Contains(':', StringComparison.Ordinal))
        {
            throw new ArgumentException("a node id may not contain ':' or a line break", nameof(nodeId));
        }

        return Serve(stopping => NodeLoopAsync(nodeId, handler, stopping));
    }

    private async Task NodeLoopAsync(string nodeId, INodeHandler handler, CancellationToken stoppingToken)
    {
        var ttlMs = (long)_options.NodeTtl.TotalMilliseconds;
        var nodeChannel = RedisKeys.Node(nodeId);
        void OnBatch(ReadOnlyMemory<byte> batch)
        {
            foreach (var frame in BusCodec.ReadBatch(batch))
            {
                Forget(handler.OnDeliverAsync(BusCodec.DecodeSequenced(frame)));
            }
        }

        try
        {
            await ReadyAsync().WaitAsync(stoppingToken).ConfigureAwait(false);

            // Sharded on a Cluster, known once connected (RedisBus.Outboxes.cs).
            nodeChannel = NodeChannel(nodeId);

            // A node id can be configured, so this may be a restart of a node that died moments ago, before fan-out's
            // sweep: what that incarnation registered (interest, presence members) is stale. Start clean, keeping what
            // this one registered already (clients may subscribe before this loop runs): its interest replaces the old.
            try
            {
                await ReplaceInterestAsync(nodeId).ConfigureAwait(false);
                var ghosts = await Presence.EvictNodeAsync(nodeId, _fanOutChannelNames[0]).ConfigureAwait(false);
                if (ghosts > 0)
                {
                    LogNodeGone(_logger, nodeId, ghosts);
                }
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                // Fan-out's sweep removes them later; serving matters more.
                LogHeartbeatFailed(_logger, nodeId, e.Message);
            }

            _nodes[nodeId] = handler;
            if (!_subscriptions.ContainsKey(RedisKeys.Resync))
            {
                await SubscribeOrLaterAsync(RedisKeys.Resync, announcement =>
                {
                    // A fan-out process took these shards: only their channels may have missed deliveries.
                    var shards = ParseShards(announcement);
                    foreach (var node in _nodes.Values)
                    {
                        Forget(shards is null ? node.OnResyncAsync() : node.OnResyncAsync((app, channel) => shards.Contains(ShardOf(app, channel))));
                    }
                }).ConfigureAwait(false);
            }

            await SubscribeOrLaterAsync(nodeChannel, OnBatch).ConfigureAwait(false);
            var seenRestores = Volatile.Read(ref _subscriptionRestores);
            var registered = false;
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    var restores = Volatile.Read(ref _subscriptionRestores);
                    if (restores != seenRestores)
                    {
                        seenRestores = restores;

                        // The node's own subscription was down for a while: make sure it is back, then check every channel.
                        if (!_subscriptions.ContainsKey(nodeChannel))
                        {
                            await SubscribeAsync(nodeChannel, OnBatch).ConfigureAwait(false);
                        }

                        await handler.OnResyncAsync().ConfigureAwait(false);
                    }

                    var added = await s_heartbeat.EvaluateAsync(Database, [RedisKeys.Nodes, RedisKeys.InterestOf(nodeId)], [nodeId, ttlMs]).ConfigureAwait(false);

                    // Redis forgot this node (restarted, or a sweep saw it silent), or a change could not be written:
                    // register its whole interest again, and when Redis forgot it (not at its first registration)
                    // check every channel, logged as event 2014. Until fan-out has the interest
                    // again, what it fans out misses this node: a node swept while Redis refused its heartbeats
                    // (NOREPLICAS, OOM, a failover) for longer than NodeTtl missed what was published between the
                    // sweep and now (WriteOutageTests). In Cluster a channel's messages may also have reached fan-out
                    // before its entry (RedisBus.Interest.cs).
                    var forgotten = (long)added == 1 && registered;
                    registered = true;
                    if (_interestStale.TryRemove(nodeId, out _) | (long)added == 1)
                    {
                        await ReplaceInterestAsync(nodeId).ConfigureAwait(false);
                        if (forgotten)
                        {
                            LogNodeRegisteredAgain(_logger, nodeId);
                        }

                        if (forgotten || _isCluster)
                        {
                            await handler.OnResyncAsync().ConfigureAwait(false);
                        }
                    }
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    _interestStale[nodeId] = true;
                    LogHeartbeatFailed(_logger, nodeId, e.Message);
                }

                await Task.Delay(TimeSpan.FromMilliseconds(ttlMs / 3), stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }

        _nodes.TryRemove(nodeId, out _);
        _nodeInterest.TryRemove(nodeId, out _);
        _interestStale.TryRemove(nodeId, out _);
        if (_database is not null)
        {
            // Score 0: fan-out's next sweep drops the node's interest and presence at once.
            await IgnoreFailure(_database.SortedSetAddAsync(RedisKeys.Nodes, nodeId, 0, SortedSetWhen.Exists)).ConfigureAwait(false);
        }

        await IgnoreFailure(UnsubscribeAsync(nodeChannel)).ConfigureAwait(false);
    }
}
