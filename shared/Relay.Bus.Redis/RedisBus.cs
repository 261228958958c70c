using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.IO.Hashing;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus.FanOut;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// The bus between processes, over one Redis: routing requests go to the shard's owner over pub/sub and come back on
/// this process's reply channel; sequenced messages reach fan-out on one channel (published by routing's Lua scripts, in
/// seq order); fan-out sends each node its messages in batches on the node's channel. Shard ownership is a lease per shard,
/// node liveness a heartbeat, node interest a hash per node; all three expire when their process dies.
/// </summary>
/// <remarks>
/// Channels and keys (all under <c>relay:bus:</c>): <c>shard:&lt;n&gt;</c>, <c>reply:&lt;instance&gt;</c>, <c>fanout</c>,
/// <c>interest</c> (pub/sub); <c>lease:&lt;n&gt;</c> (string, owner, PX), <c>routers</c> and <c>nodes</c> (sorted sets, score =
/// last heartbeat, Redis clock), <c>interest:&lt;node&gt;</c> (hash <c>app\nchannel</c> → subscribers). Pub/sub is at most once:
/// the Lua scripts make appends atomic, and what a lost hop drops is recovered from history by the client.
/// </remarks>
public sealed partial class RedisBus : IRelayBus, IAsyncDisposable
{
    /// <summary>Prefix of every bus channel and key.</summary>
    public const string Prefix = "relay:bus:";

    /// <summary>The channel routing publishes sequenced messages on and fan-out listens to.</summary>
    public const string FanOutChannel = Prefix + "fanout";

    private const string InterestChannel = Prefix + "interest";

    // Fan-out says "deliveries may have been lost" here after it (re)subscribes; every node checks its channels.
    private const string ResyncChannel = Prefix + "resync";
    private const string NodesKey = Prefix + "nodes";

    // ARGV: instance, ttlMs, shards. Registers the router, renews its leases, gives back what exceeds a fair share
    // (shards / live routers, rounded up) and takes free shards up to it. Returns the shards now owned.
    private static readonly RedisScript s_leaseTick = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local me, ttl, shards = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
        local routers = 'relay:bus:routers'
        redis.call('ZADD', routers, now, me)
        redis.call('ZREMRANGEBYSCORE', routers, '-inf', now - ttl)
        local target = math.ceil(shards / math.max(1, redis.call('ZCARD', routers)))
        local owned, free = {}, {}
        for i = 0, shards - 1 do
          local holder = redis.call('GET', 'relay:bus:lease:' .. i)
          if holder == me then owned[#owned + 1] = i elseif not holder then free[#free + 1] = i end
        end
        while #owned > target do
          redis.call('DEL', 'relay:bus:lease:' .. table.remove(owned))
        end
        for _, i in ipairs(owned) do redis.call('PEXPIRE', 'relay:bus:lease:' .. i, ttl) end
        for _, i in ipairs(free) do
          if #owned >= target then break end
          redis.call('SET', 'relay:bus:lease:' .. i, me, 'PX', ttl)
          owned[#owned + 1] = i
        end
        return owned
        """);

    // KEYS: lease. ARGV: instance, ttlMs. 1 when the lease is (now) this instance's, 0 when another holds it.
    private static readonly RedisScript s_leaseClaim = new("""
        local holder = redis.call('GET', KEYS[1])
        if holder == ARGV[1] then return 1 end
        if holder then return 0 end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
        return 1
        """);

    // ARGV: instance. Gives back every lease and leaves the router set.
    private static readonly RedisScript s_leaseRelease = new("""
        redis.call('ZREM', 'relay:bus:routers', ARGV[1])
        for _, key in ipairs(redis.call('KEYS', 'relay:bus:lease:*')) do
          if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
        end
        return 0
        """);

    // KEYS: nodes, interest hash. ARGV: node, ttlMs. Returns 1 when the node was not registered (new, or Redis lost it).
    private static readonly RedisScript s_heartbeat = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
        redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 2)
        return added
        """);

    // KEYS: interest hash. ARGV: field, subscribers, ttlMs, change frame.
    private static readonly RedisScript s_interest = new("""
        if tonumber(ARGV[2]) > 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
        redis.call('PUBLISH', 'relay:bus:interest', ARGV[4])
        return 0
        """);

    // KEYS: interest hash. ARGV: ttlMs, reset frame, then field, subscribers, change frame for every entry.
    private static readonly RedisScript s_replaceInterest = new("""
        redis.call('DEL', KEYS[1])
        redis.call('PUBLISH', 'relay:bus:interest', ARGV[2])
        for i = 3, #ARGV, 3 do
          redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
          redis.call('PUBLISH', 'relay:bus:interest', ARGV[i + 2])
        end
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
        return 0
        """);

    // KEYS: nodes. ARGV: ttlMs. Removes nodes whose heartbeat stopped, with their interest; returns their ids.
    private static readonly RedisScript s_sweepNodes = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
        for _, node in ipairs(dead) do
          redis.call('ZREM', KEYS[1], node)
          redis.call('DEL', 'relay:bus:interest:' .. node)
        end
        return dead
        """);

    private readonly RedisBusOptions _options;
    private readonly IMeterFactory? _meters;
    private readonly ILogger<RedisBus> _logger;
    private readonly Lazy<Task> _ready;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<string, Action<ReadOnlyMemory<byte>>> _handlers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, TaskCompletionSource<RoutingReply>> _pending = new();
    private readonly ConcurrentDictionary<string, INodeHandler> _nodes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, NodeOutbox> _outboxes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<(string App, string Channel), int>> _nodeInterest = new(StringComparer.Ordinal);

    // Orders interest writes against whole-interest replacements (see ReplaceInterestAsync).
    private readonly Lock _interestOrder = new();
    private readonly ConcurrentDictionary<string, bool> _interestStale = new(StringComparer.Ordinal);
    private readonly string _replyChannel;
    private readonly Lock _replyGate = new();
    private volatile TaskCompletionSource _replyReady = Ready();
    private RedisConnection? _commands;
    private RedisSubscriber? _subscriber;
    private RedisPresence? _presence;
    private long _nextCorrelation;
    private int _disposed;

    [ThreadStatic]
    private static (RelayMessage Message, byte[] Frame) t_lastEncoded;

    /// <summary>Creates the bus; it connects on first use (or when the startup check awaits <see cref="ReadyAsync"/>).</summary>
    public RedisBus(IOptions<RedisBusOptions> options, ILogger<RedisBus> logger, IMeterFactory? meters = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _meters = meters;
        _logger = logger;
        InstanceId = $"{Environment.MachineName}-{Environment.ProcessId}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
        _replyChannel = Prefix + "reply:" + InstanceId;
        _ready = new Lazy<Task>(ConnectAsync, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>This process's id on the bus (lease owner, reply channel).</summary>
    public string InstanceId { get; }

    /// <inheritdoc />
    public bool MayLoseDeliveries => true;

    private readonly ConcurrentDictionary<int, bool> _ownedShards = new();

    /// <summary>The command connection (after <see cref="ReadyAsync"/>).</summary>
    public RedisConnection Commands => _commands ?? throw new InvalidOperationException("the Redis bus is not connected yet");

    /// <summary>Presence in Redis, on the command connection (after <see cref="ReadyAsync"/>).</summary>
    public RedisPresence Presence => _presence ?? throw new InvalidOperationException("the Redis bus is not connected yet");

    /// <summary>Connects both connections (once) and subscribes to this process's reply channel.</summary>
    public Task ReadyAsync() => _ready.Value;

    /// <summary>The routing shard of a channel: a stable hash (xxHash32 of app, NUL, channel) modulo the shard count.</summary>
    public int ShardOf(string app, string channel) => ShardOf(app, channel, _options.Shards);

    /// <summary>The routing shard of a channel among <paramref name="shards"/>.</summary>
    public static int ShardOf(string app, string channel, int shards)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(channel);
        var bytes = Encoding.UTF8.GetBytes(app + "\0" + channel);
        return (int)(XxHash32.HashToUInt32(bytes) % (uint)shards);
    }

    /// <summary>The lease key and owner that fence this process's writes to a channel's shard.</summary>
    public (string Key, string Owner) FenceFor(string app, string channel) => (LeaseKey(ShardOf(app, channel)), InstanceId);

    private static string LeaseKey(int shard) => Prefix + "lease:" + shard;

    private static string ShardChannel(int shard) => Prefix + "shard:" + shard;

    private static string NodeChannel(string nodeId) => Prefix + "node:" + nodeId;

    private static string InterestKey(string nodeId) => Prefix + "interest:" + nodeId;

    private async Task ConnectAsync()
    {
        var connection = _options.ToConnectionOptions();

        // Round trips, errors and reconnects of both connections show at /metrics (meter Relay.Redis).
        connection.MeterFactory = _meters;
        try
        {
            _commands = await RedisConnection.ConnectAsync(connection, _stopping.Token).ConfigureAwait(false);
            _subscriber = await RedisSubscriber.ConnectAsync(connection, OnMessage, _stopping.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new InvalidOperationException($"cannot reach Redis at {_options.Endpoint} (Relay:Redis:Endpoint): {e.Message}. Start Redis or fix the setting.", e);
        }

        _presence = new RedisPresence(_commands);
        _handlers[_replyChannel] = OnReply;
        await _subscriber.SubscribeAsync(_replyChannel).ConfigureAwait(false);
        _subscriber.StateChanged += OnSubscriberState;
        LogConnected(_logger, _options.Endpoint, InstanceId);
    }

    // While the subscriber is away, replies published to this process would be lost: requests wait (within their timeout)
    // until the reply channel is confirmed again after a reconnect.
    private void OnSubscriberState(object? sender, RedisConnectionStateChangedEventArgs e)
    {
        lock (_replyGate)
        {
            if (e.State == RedisConnectionState.Reconnecting && _replyReady.Task.IsCompleted)
            {
                _replyReady = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            else if (e.State == RedisConnectionState.Connected && !_replyReady.Task.IsCompleted)
            {
                _ = ConfirmReplyChannelAsync(_replyReady);
            }
        }
    }

    private async Task ConfirmReplyChannelAsync(TaskCompletionSource ready)
    {
        try
        {
            await _subscriber!.SubscribeAsync(_replyChannel).ConfigureAwait(false);
            ready.TrySetResult();
        }
        catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException)
        {
            // The next reconnect confirms it; requests time out meanwhile.
            LogSubscribeLater(_logger, _replyChannel, e.Message);
        }
    }

    private void OnMessage(RedisMessage message)
    {
        if (_handlers.TryGetValue(message.Channel, out var handler))
        {
            try
            {
                handler(message.Payload);
            }
            catch (Exception e)
            {
                LogBadFrame(_logger, message.Channel, e);
            }
        }
    }

    /// <inheritdoc />
    public async ValueTask<RoutingReply> SendToRoutingAsync(RoutingRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var shard = ShardOf(request.App, request.Channel);
        var correlation = Interlocked.Increment(ref _nextCorrelation);
        var reply = new TaskCompletionSource<RoutingReply>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[correlation] = reply;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.RequestTimeout);
        try
        {
            await ReadyAsync().WaitAsync(timeout.Token).ConfigureAwait(false);
            await _replyReady.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
            var frame = BusCodec.EncodeRequest(correlation, _replyChannel, request);

            // Nobody listening means the shard is between owners (a handover): wait for the next one.
            while (await Commands.PublishAsync(ShardChannel(shard), frame).WaitAsync(timeout.Token).ConfigureAwait(false) == 0)
            {
                await Task.Delay(50, timeout.Token).ConfigureAwait(false);
            }

            return await reply.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return new ErrorReply(new RelayError(ErrorCodes.Unavailable, $"routing shard {shard} did not answer within {_options.RequestTimeout.TotalSeconds:0.#} s; try again"));
        }
        catch (Exception e) when (e is RedisException or InvalidOperationException or TimeoutException)
        {
            return new ErrorReply(new RelayError(ErrorCodes.Unavailable, $"the bus is unavailable ({e.Message}); try again"));
        }
        finally
        {
            _pending.TryRemove(correlation, out _);
        }
    }

    private void OnReply(ReadOnlyMemory<byte> frame)
    {
        var (correlation, reply) = BusCodec.DecodeReply(frame);
        if (_pending.TryRemove(correlation, out var waiting))
        {
            waiting.TrySetResult(reply);
        }
    }

    /// <inheritdoc />
    public async ValueTask PublishSequencedAsync(RelayMessage message)
    {
        await ReadyAsync().ConfigureAwait(false);
        await Commands.PublishAsync(FanOutChannel, BusCodec.EncodeSequenced(message)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public ValueTask DeliverToNodeAsync(string nodeId, RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);

        // Fan-out hands one message to every interested node in turn: encode it once.
        var cached = t_lastEncoded;
        byte[] frame;
        if (ReferenceEquals(cached.Message, message))
        {
            frame = cached.Frame;
        }
        else
        {
            frame = BusCodec.EncodeSequenced(message);
            t_lastEncoded = (message, frame);
        }

        _outboxes.GetOrAdd(nodeId, static (id, self) => new NodeOutbox(self, id), this).Post(frame);
        return ValueTask.CompletedTask;
    }

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
                write = s_interest.EvaluateAsync(
                    Commands,
                    [InterestKey(change.NodeId)],
                    [change.App + "\n" + change.ChannelOrPattern, latest.Subscribers, (long)_options.NodeTtl.TotalMilliseconds, BusCodec.EncodeInterest(latest)]);
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

    // Replaces what Redis and fan-out hold for a node with what it knows: fan-out first forgets the node, then gets
    // every entry, all published by one script (so nothing else comes in between).
    // The snapshot and the write happen under _interestOrder, as does every single change's write (commands go out in
    // call order): a change missing from the snapshot is written after it, never before it, where the reset would undo it.
    private Task ReplaceInterestAsync(string nodeId)
    {
        var known = _nodeInterest.GetOrAdd(nodeId, static _ => new());
        lock (_interestOrder)
        {
            var args = new List<RedisArg> { (long)_options.NodeTtl.TotalMilliseconds, BusCodec.EncodeInterest(new InterestChange(nodeId, "", "", -1)) };
            foreach (var ((app, channel), subscribers) in known)
            {
                args.Add(app + "\n" + channel);
                args.Add(subscribers);
                args.Add(BusCodec.EncodeInterest(new InterestChange(nodeId, app, channel, subscribers)));
            }

            return s_replaceInterest.EvaluateAsync(Commands, [InterestKey(nodeId)], [.. args]);
        }
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
        var nodes = await Commands.ExecuteAsync("ZRANGE", NodesKey, 0, -1).ConfigureAwait(false);
        var result = new List<(string, List<(string, string, int)>)>();
        foreach (var id in Strings(nodes))
        {
            var fields = await Commands.HGetAllAsync(InterestKey(id)).ConfigureAwait(false);
            var interest = new List<(string, string, int)>(fields.Count);
            foreach (var (field, count) in fields)
            {
                var split = field.IndexOf('\n', StringComparison.Ordinal);
                if (split > 0)
                {
                    interest.Add((field[..split], field[(split + 1)..], (int)count.AsInt64()));
                }
            }

            result.Add((id, interest));
        }

        return result;
    }

    /// <inheritdoc />
    public IDisposable ServeRouting(IRoutingHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Serve(stopping => LeaseLoopAsync(handler, stopping));
    }

    private async Task LeaseLoopAsync(IRoutingHandler handler, CancellationToken stoppingToken)
    {
        var ttlMs = (long)_options.LeaseTtl.TotalMilliseconds;
        var period = _options.LeaseTtl / 3;
        try
        {
            await ReadyAsync().WaitAsync(stoppingToken).ConfigureAwait(false);
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    var owned = await s_leaseTick.EvaluateAsync(Commands, [], [InstanceId, ttlMs, _options.Shards]).ConfigureAwait(false);
                    var now = new HashSet<int>();
                    foreach (var item in owned.Items)
                    {
                        now.Add((int)item.AsInt64());
                    }

                    foreach (var shard in _ownedShards.Keys.Where(s => !now.Contains(s)).ToList())
                    {
                        _ownedShards.TryRemove(shard, out _);
                        _handlers.TryRemove(ShardChannel(shard), out _);
                        await _subscriber!.UnsubscribeAsync(ShardChannel(shard)).ConfigureAwait(false);
                        LogShardLost(_logger, shard, InstanceId);
                    }

                    foreach (var shard in now.Where(s => !_ownedShards.ContainsKey(s)))
                    {
                        _handlers[ShardChannel(shard)] = frame => OnRoutingRequest(handler, frame);
                        await _subscriber!.SubscribeAsync(ShardChannel(shard)).ConfigureAwait(false);
                        _ownedShards[shard] = true;
                        LogShardOwned(_logger, shard, InstanceId);
                    }
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    // Redis is away: keep the subscriptions; the leases (and their fencing) decide who may write.
                    LogLeaseFailed(_logger, e.Message);
                }

                await Task.Delay(period, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }

        foreach (var shard in _ownedShards.Keys)
        {
            _handlers.TryRemove(ShardChannel(shard), out _);
            if (_subscriber is not null)
            {
                await IgnoreFailure(_subscriber.UnsubscribeAsync(ShardChannel(shard))).ConfigureAwait(false);
            }
        }

        _ownedShards.Clear();
        if (_commands is not null)
        {
            await IgnoreFailure(s_leaseRelease.EvaluateAsync(_commands, [], [InstanceId])).ConfigureAwait(false);
        }
    }

    // On the subscriber's read loop: the handler starts synchronously (its Redis commands go out in request order);
    // the reply is published when it completes.
    private void OnRoutingRequest(IRoutingHandler handler, ReadOnlyMemory<byte> frame)
    {
        var (correlation, replyTo, request) = BusCodec.DecodeRequest(frame);
        _ = ReplyAsync(handler, correlation, replyTo, request, Handle(handler, request));
    }

    private ValueTask<RoutingReply> Handle(IRoutingHandler handler, RoutingRequest request)
    {
        try
        {
            return handler.HandleAsync(request, _stopping.Token);
        }
        catch (Exception e)
        {
            return ValueTask.FromException<RoutingReply>(e);
        }
    }

    private async Task ReplyAsync(IRoutingHandler handler, long correlation, string replyTo, RoutingRequest request, ValueTask<RoutingReply> handling)
    {
        var reply = await Settle(handling).ConfigureAwait(false);

        // Fenced out. When nobody holds the shard's lease (it ran out, or Redis restarted and lost or expired it), the
        // instances still listening race to claim it, and the one that wins handles the request at once instead of
        // leaving its caller to time out. When another instance holds it, that owner answers.
        if (reply is NotOwnerReply)
        {
            try
            {
                var claimed = await s_leaseClaim.EvaluateAsync(
                    Commands,
                    [LeaseKey(ShardOf(request.App, request.Channel))],
                    [InstanceId, (long)_options.LeaseTtl.TotalMilliseconds]).ConfigureAwait(false);
                if (claimed.AsInt64() != 1)
                {
                    return;
                }
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                return;
            }

            reply = await Settle(Handle(handler, request)).ConfigureAwait(false);
            if (reply is NotOwnerReply)
            {
                return;
            }
        }

        await IgnoreFailure(Commands.PublishAsync(replyTo, BusCodec.EncodeReply(correlation, reply))).ConfigureAwait(false);
    }

    private async Task<RoutingReply> Settle(ValueTask<RoutingReply> handling)
    {
        try
        {
            return await handling.ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            return new ErrorReply(new RelayError(ErrorCodes.Unavailable, $"routing could not reach Redis ({e.Message}); try again"));
        }
        catch (Exception e)
        {
            LogRoutingFailed(_logger, e);
            return new ErrorReply(new RelayError(ErrorCodes.Internal, "routing failed"));
        }
    }

    /// <inheritdoc />
    public IDisposable ServeFanOut(IFanOutHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Serve(stopping => FanOutLoopAsync(handler, stopping));
    }

    private async Task FanOutLoopAsync(IFanOutHandler handler, CancellationToken stoppingToken)
    {
        var reload = 1;
        void OnState(object? sender, RedisConnectionStateChangedEventArgs e)
        {
            if (e.State == RedisConnectionState.Connected)
            {
                Volatile.Write(ref reload, 1);
            }
        }

        try
        {
            await ReadyAsync().WaitAsync(stoppingToken).ConfigureAwait(false);
            _handlers[FanOutChannel] = frame => Forget(handler.OnSequencedAsync(BusCodec.DecodeSequenced(frame)));
            _handlers[InterestChannel] = frame =>
            {
                // A negative count is a node's reset: forget it, its whole interest follows.
                var change = BusCodec.DecodeInterest(frame);
                Forget(change.Subscribers < 0 ? handler.OnNodeGoneAsync(change.NodeId) : handler.OnInterestAsync(change));
            };
            _subscriber!.StateChanged += OnState;
            await SubscribeOrLaterAsync(InterestChannel).ConfigureAwait(false);
            await SubscribeOrLaterAsync(FanOutChannel).ConfigureAwait(false);
            var ttlMs = (long)_options.NodeTtl.TotalMilliseconds;
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    // After a start or a reconnect, changes may have been missed: read every node's interest again.
                    if (Interlocked.Exchange(ref reload, 0) == 1)
                    {
                        foreach (var (node, interest) in await LoadInterestAsync().ConfigureAwait(false))
                        {
                            foreach (var (app, channel, subscribers) in interest)
                            {
                                await handler.OnInterestAsync(new InterestChange(node, app, channel, subscribers)).ConfigureAwait(false);
                            }
                        }

                        // Subscribed again for sure (confirmed), messages sequenced while fan-out was not listening are
                        // lost to it: nodes check their channels' positions and read the rest from history.
                        await _subscriber.SubscribeAsync(FanOutChannel).ConfigureAwait(false);
                        await Commands.PublishAsync(ResyncChannel, "fanout").ConfigureAwait(false);
                    }

                    var dead = await s_sweepNodes.EvaluateAsync(Commands, [NodesKey], [ttlMs]).ConfigureAwait(false);
                    foreach (var id in Strings(dead))
                    {
                        await handler.OnNodeGoneAsync(id).ConfigureAwait(false);
                        var members = await Presence.EvictNodeAsync(id, FanOutChannel).ConfigureAwait(false);
                        if (_outboxes.TryRemove(id, out var outbox))
                        {
                            outbox.Complete();
                        }

                        LogNodeGone(_logger, id, members);
                    }
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    Volatile.Write(ref reload, 1);
                    LogSweepFailed(_logger, e.Message);
                }

                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(1000, ttlMs / 3)), stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
        finally
        {
            if (_subscriber is not null)
            {
                _subscriber.StateChanged -= OnState;
            }
        }

        _handlers.TryRemove(FanOutChannel, out _);
        _handlers.TryRemove(InterestChannel, out _);
        if (_subscriber is not null)
        {
            await IgnoreFailure(_subscriber.UnsubscribeAsync(FanOutChannel)).ConfigureAwait(false);
            await IgnoreFailure(_subscriber.UnsubscribeAsync(InterestChannel)).ConfigureAwait(false);
        }
    }

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
        var resync = 0;
        var wasDown = false;
        void OnState(object? sender, RedisConnectionStateChangedEventArgs e)
        {
            if (e.State == RedisConnectionState.Reconnecting)
            {
                wasDown = true;
            }
            else if (e.State == RedisConnectionState.Connected && wasDown)
            {
                Volatile.Write(ref resync, 1);
            }
        }

        try
        {
            await ReadyAsync().WaitAsync(stoppingToken).ConfigureAwait(false);

            // A node id can be configured, so this may be a restart of a node that died moments ago, before fan-out's
            // sweep: what that incarnation registered (interest, presence members) is stale. Start clean, keeping what
            // this one registered already (clients may subscribe before this loop runs): its interest replaces the old.
            try
            {
                await ReplaceInterestAsync(nodeId).ConfigureAwait(false);
                var ghosts = await Presence.EvictNodeAsync(nodeId, FanOutChannel).ConfigureAwait(false);
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

            _subscriber!.StateChanged += OnState;
            _nodes[nodeId] = handler;
            _handlers[ResyncChannel] = _ =>
            {
                foreach (var node in _nodes.Values)
                {
                    Forget(node.OnResyncAsync());
                }
            };
            await SubscribeOrLaterAsync(ResyncChannel).ConfigureAwait(false);
            _handlers[NodeChannel(nodeId)] = batch =>
            {
                foreach (var frame in BusCodec.ReadBatch(batch))
                {
                    Forget(handler.OnDeliverAsync(BusCodec.DecodeSequenced(frame)));
                }
            };
            await SubscribeOrLaterAsync(NodeChannel(nodeId)).ConfigureAwait(false);
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    if (Interlocked.Exchange(ref resync, 0) == 1)
                    {
                        // The node's own subscription was down for a while: confirm it is back, then check every channel.
                        await _subscriber.SubscribeAsync(NodeChannel(nodeId)).ConfigureAwait(false);
                        await handler.OnResyncAsync().ConfigureAwait(false);
                    }

                    var added = await s_heartbeat.EvaluateAsync(Commands, [NodesKey, InterestKey(nodeId)], [nodeId, ttlMs]).ConfigureAwait(false);

                    // Redis forgot this node (restarted, or a sweep saw it silent), or a change could not be written:
                    // register its whole interest again.
                    if (_interestStale.TryRemove(nodeId, out _) | added.AsInt64() == 1)
                    {
                        await ReplaceInterestAsync(nodeId).ConfigureAwait(false);
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

        if (_subscriber is not null)
        {
            _subscriber.StateChanged -= OnState;
        }

        _nodes.TryRemove(nodeId, out _);
        _handlers.TryRemove(NodeChannel(nodeId), out _);
        _nodeInterest.TryRemove(nodeId, out _);
        _interestStale.TryRemove(nodeId, out _);
        if (_commands is not null)
        {
            // Score 0: fan-out's next sweep drops the node's interest and presence at once.
            await IgnoreFailure(_commands.ExecuteAsync("ZADD", NodesKey, "XX", 0, nodeId)).ConfigureAwait(false);
        }

        if (_subscriber is not null)
        {
            await IgnoreFailure(_subscriber.UnsubscribeAsync(NodeChannel(nodeId))).ConfigureAwait(false);
        }
    }

    // A subscription not confirmed in time stays wanted and is made again on the next reconnect: carry on meanwhile.
    private async Task SubscribeOrLaterAsync(string channel)
    {
        try
        {
            await _subscriber!.SubscribeAsync(channel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            LogSubscribeLater(_logger, channel, e.Message);
        }
    }

    private static TaskCompletionSource Ready()
    {
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ready.SetResult();
        return ready;
    }

    private static List<string> Strings(RedisValue array)
    {
        var items = array.Items;
        var result = new List<string>(items.Length);
        foreach (var item in items)
        {
            result.Add(item.AsString()!);
        }

        return result;
    }

    // Handlers complete synchronously in practice; one that does not is observed, never awaited on the read loop.
    private void Forget(ValueTask pending)
    {
        if (!pending.IsCompletedSuccessfully)
        {
            _ = ObserveAsync(pending.AsTask());
        }
    }

    private async Task ObserveAsync(Task pending)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            LogHandlerFailed(_logger, e);
        }
    }

    private static async Task IgnoreFailure(Task task)
    {
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException or InvalidOperationException)
        {
            // Best effort while stopping: expiry cleans up what this could not.
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        // Registered as itself and as IRelayBus: the container disposes it twice.
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var outbox in _outboxes.Values)
        {
            outbox.Complete();
        }

        if (_subscriber is not null)
        {
            await _subscriber.DisposeAsync().ConfigureAwait(false);
        }

        if (_commands is not null)
        {
            await _commands.DisposeAsync().ConfigureAwait(false);
        }

        _stopping.Dispose();
    }

    /// <summary>
    /// One node's outgoing messages: posted in order by fan-out, published in order by one loop, as many as are waiting
    /// (up to <see cref="RedisBusOptions.MaxBatchBytes"/>) per PUBLISH. Bounded: when Redis cannot keep up the newest are
    /// dropped (counted, logged) rather than memory growing; subscribers recover what they miss from history.
    /// </summary>
    private sealed class NodeOutbox
    {
        private const int Capacity = 100_000;
        private readonly Channel<byte[]> _queue = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(Capacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.DropWrite,
        });

        private readonly RedisBus _bus;
        private readonly string _channel;
        private long _dropped;

        public NodeOutbox(RedisBus bus, string nodeId)
        {
            _bus = bus;
            _channel = NodeChannel(nodeId);
            _ = Task.Run(SendLoopAsync);
        }

        public void Post(byte[] frame)
        {
            if (!_queue.Writer.TryWrite(frame) && Interlocked.Increment(ref _dropped) % 10_000 == 1)
            {
                LogOutboxFull(_bus._logger, _channel, _dropped);
            }
        }

        public void Complete() => _queue.Writer.TryComplete();

        private async Task SendLoopAsync()
        {
            var batch = new ArrayBufferWriter<byte>(16 * 1024);
            var reader = _queue.Reader;
            try
            {
                while (await reader.WaitToReadAsync().ConfigureAwait(false))
                {
                    batch.ResetWrittenCount();
                    while (batch.WrittenCount < _bus._options.MaxBatchBytes && reader.TryRead(out var frame))
                    {
                        BusCodec.AppendToBatch(batch, frame);
                    }

                    // A failed PUBLISH may or may not have reached Redis: send it again (nodes drop what they already
                    // have by seq) until it goes through or the bus stops.
                    var payload = batch.WrittenMemory.ToArray();
                    for (var attempt = 1; ; attempt++)
                    {
                        try
                        {
                            await _bus.Commands.PublishAsync(_channel, payload).ConfigureAwait(false);
                            break;
                        }
                        catch (Exception e) when (e is RedisException or TimeoutException)
                        {
                            LogDeliveryFailed(_bus._logger, _channel, attempt, e.Message);
                            await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(1000, 50 * attempt)), _bus._stopping.Token).ConfigureAwait(false);
                        }
                    }
                }
            }
            catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException or OperationCanceledException)
            {
                // The bus is stopping.
            }
        }
    }

    // Runs a role's loop until its registration is disposed (or the bus is).
    private Registration Serve(Func<CancellationToken, Task> loop)
    {
        var stop = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        return new Registration(stop, Task.Run(() => loop(stop.Token)));
    }

    private sealed class Registration(CancellationTokenSource stop, Task loop) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                stop.Cancel();

                // Bounded: each loop ends within one tick of its cancellation (and gives back what it held).
                loop.Wait(TimeSpan.FromSeconds(10));
                stop.Dispose();
            }
        }
    }

    [LoggerMessage(EventId = 2000, Level = LogLevel.Information, Message = "Redis bus connected to {Endpoint} as {Instance}")]
    private static partial void LogConnected(ILogger logger, string? endpoint, string instance);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "Dropped a malformed bus frame on {Channel}")]
    private static partial void LogBadFrame(ILogger logger, string channel, Exception error);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Routing shard {Shard} now owned by {Instance}")]
    private static partial void LogShardOwned(ILogger logger, int shard, string instance);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Information, Message = "Routing shard {Shard} handed over by {Instance}")]
    private static partial void LogShardLost(ILogger logger, int shard, string instance);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Warning, Message = "Could not renew routing leases: {Reason}")]
    private static partial void LogLeaseFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Error, Message = "A routing request failed")]
    private static partial void LogRoutingFailed(ILogger logger, Exception error);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Information, Message = "Ingress node {Node} is gone; its interest and {Members} presence members were removed")]
    private static partial void LogNodeGone(ILogger logger, string node, long members);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Warning, Message = "Fan-out could not sweep nodes: {Reason}")]
    private static partial void LogSweepFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Warning, Message = "Node {Node} could not send its heartbeat: {Reason}")]
    private static partial void LogHeartbeatFailed(ILogger logger, string node, string reason);

    [LoggerMessage(EventId = 2009, Level = LogLevel.Warning, Message = "Outbox of {Channel} is full; {Dropped} messages dropped so far (subscribers recover them from history)")]
    private static partial void LogOutboxFull(ILogger logger, string channel, long dropped);

    [LoggerMessage(EventId = 2013, Level = LogLevel.Warning, Message = "Node {Node} could not write an interest change ({Reason}); its whole interest is written again with the next heartbeat")]
    private static partial void LogInterestFailed(ILogger logger, string node, string reason);

    [LoggerMessage(EventId = 2012, Level = LogLevel.Warning, Message = "Subscribing to {Channel} was not confirmed ({Reason}); it is made again on the next reconnect")]
    private static partial void LogSubscribeLater(ILogger logger, string channel, string reason);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Error, Message = "A bus handler failed")]
    private static partial void LogHandlerFailed(ILogger logger, Exception error);

    [LoggerMessage(EventId = 2010, Level = LogLevel.Warning, Message = "Could not deliver a batch on {Channel} (attempt {Attempt}, retrying): {Reason}")]
    private static partial void LogDeliveryFailed(ILogger logger, string channel, int attempt, string reason);
}
