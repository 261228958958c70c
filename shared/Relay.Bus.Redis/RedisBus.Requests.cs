using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.Logging;
using Relay.Bus.Routing;
using Relay.Core.Protocol;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Requests and leases: a request goes to its shard's channel, where the routing instance holding the shard's lease
// listens; the reply comes back on the caller's reply channel. Leases are renewed by one script per tick.
public sealed partial class RedisBus
{
    // Shared Lua: a shard's fencing token, taken anew whenever a lease is taken: above the shard's last, and at least the
    // server's clock in microseconds, so it still increases after Redis lost the fences hash (a restart, a failover that
    // lost the last writes) while channels kept a higher one.
    private const string FencePrelude = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local function new_token(fences, shard)
          local token = math.max(tonumber(redis.call('HGET', fences, shard) or '0') + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
          local text = string.format('%d', token)
          redis.call('HSET', fences, shard, text)
          return text
        end
        local function token_of(fences, shard)
          return redis.call('HGET', fences, shard) or new_token(fences, shard)
        end

        """;

    // KEYS: routers, fences, then every shard's lease in shard order. ARGV: instance, ttlMs. Registers the router, renews
    // its leases, gives back what exceeds a fair share (shards / live routers, rounded up) and takes free shards up to it
    // (each with a new fencing token). Returns the shards now owned and their tokens: {shard, token, shard, token, ...}.
    private static readonly RedisLuaScript s_leaseTick = new(FencePrelude + """
        local me, ttl, shards = ARGV[1], tonumber(ARGV[2]), #KEYS - 2
        redis.call('ZADD', KEYS[1], now, me)
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
        local target = math.ceil(shards / math.max(1, redis.call('ZCARD', KEYS[1])))
        local owned, free = {}, {}
        for i = 0, shards - 1 do
          local holder = redis.call('GET', KEYS[i + 3])
          if holder == me then owned[#owned + 1] = i elseif not holder then free[#free + 1] = i end
        end
        while #owned > target do
          redis.call('DEL', KEYS[table.remove(owned) + 3])
        end
        local reply = {}
        for _, i in ipairs(owned) do
          redis.call('PEXPIRE', KEYS[i + 3], ttl)
          reply[#reply + 1] = i
          reply[#reply + 1] = token_of(KEYS[2], i)
        end
        for _, i in ipairs(free) do
          if #owned >= target then break end
          redis.call('SET', KEYS[i + 3], me, 'PX', ttl)
          owned[#owned + 1] = i
          reply[#reply + 1] = i
          reply[#reply + 1] = new_token(KEYS[2], i)
        end
        return reply
        """);

    // KEYS: lease, fences. ARGV: instance, ttlMs, shard. The fencing token when the lease is (now) this instance's, '' when
    // another holds it.
    private static readonly RedisLuaScript s_leaseClaim = new(FencePrelude + """
        local holder = redis.call('GET', KEYS[1])
        if holder == ARGV[1] then return token_of(KEYS[2], ARGV[3]) end
        if holder then return '' end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
        return new_token(KEYS[2], ARGV[3])
        """);

    // KEYS: routers, fences, then every shard's lease. ARGV: instance. Gives back every lease and leaves the router set.
    private static readonly RedisLuaScript s_leaseRelease = new("""
        redis.call('ZREM', KEYS[1], ARGV[1])
        for i = 3, #KEYS do
          if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
        end
        return 0
        """);

    // How long a caller waits before it sends a request again that every routing instance it reached declined (they
    // are not the shard's owner, and the owner was not listening yet): as long as the wait for a listener below.
    private static readonly TimeSpan DeclinedResendDelay = TimeSpan.FromMilliseconds(50);

    // How long a request that cannot be repeated safely (a presence change) still waits for its
    // answer once the reply subscription is back, when the answer may have gone out while it was away: the routing
    // instance's own reply, held in its client's backlog while Redis was down, goes out when its connection is back
    // (0.2 s after a restart in MultiProcessTests). Past that, the caller is told 50300 rather than left to time out.
    private static readonly TimeSpan InDoubtGrace = TimeSpan.FromSeconds(2);

    // A routing instance's "not mine" on a caller's reply channel: it got the request, is not the shard's owner and
    // could not claim it (another instance holds the lease). Not a BusCodec reply (those are JSON objects).
    private static ReadOnlySpan<byte> DeclinedPrefix => "declined:"u8;

    // A process's own probe on its reply channel, published to learn that the channel's subscription is in effect.
    private static ReadOnlySpan<byte> ProbePrefix => "probe:"u8;

    // How long a probe may take to come back before the subscription counts as not back yet.
    private static readonly TimeSpan ProbeWait = TimeSpan.FromSeconds(1);

    // The probe on its way (its number, completed when it comes back).
    private ReplyProbe? _probe;
    private long _probes;

    private readonly ConcurrentDictionary<long, PendingRequest> _pending = new();
    private readonly ConcurrentDictionary<int, bool> _ownedShards = new();

    // Shard → the fencing token of this instance's lease on it (the tick's, or a claim's).
    private readonly ConcurrentDictionary<int, string> _fences = new();
    private readonly RedisChannel _replyChannel;
    private readonly string _replyChannelName;
    private readonly RedisKey[] _leaseKeys;
    private readonly Lock _replyGate = new();
    private volatile TaskCompletionSource _replyReady = Ready();

    // Counts the reply subscription's losses: a request sent before the latest loss may have had its answer published
    // while nobody listened (pub/sub is at most once), and is sent again or answered when the subscription is back.
    private long _replyGeneration;
    private long _nextCorrelation;

    /// <inheritdoc />
    public async ValueTask<RoutingReply> SendToRoutingAsync(RoutingRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var shard = ShardOf(request.App, request.Channel);
        var ticket = IsOrdered(request) ? new OrderTicket(SendOrderOf(shard)) : null;
        var pending = new PendingRequest();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.RequestTimeout);
        var again = false;
        try
        {
            await ReadyAsync().WaitAsync(timeout.Token).ConfigureAwait(false);
            for (; ; again = true)
            {
                // Each attempt has a correlation of its own, so a decline or an answer is counted for the attempt it is for.
                var correlation = Interlocked.Increment(ref _nextCorrelation);
                var generation = await ReplySubscriptionAsync(timeout.Token).ConfigureAwait(false);
                var retry = pending.Begin(correlation, generation);
                _pending[correlation] = pending;

                // Nobody listening means the shard is between owners (a handover): wait for the next one. A numbered
                // request goes again with the others of its shard, in number order (RedisBus.Order.cs), after the same wait.
                long receivers;
                while ((receivers = await PublishRequestAsync(shard, correlation, request, ticket, again).WaitAsync(timeout.Token).ConfigureAwait(false)) == 0)
                {
                    again = true;
                    if (ticket is null)
                    {
                        await Task.Delay(DeclinedResendDelay, timeout.Token).ConfigureAwait(false);
                    }
                }

                pending.Reached(correlation, receivers, _time.GetTimestamp());
                EnsureOverdueSweep();
                if (await Task.WhenAny(pending.Reply.Task, retry).WaitAsync(timeout.Token).ConfigureAwait(false) == pending.Reply.Task)
                {
                    return await pending.Reply.Task.ConfigureAwait(false);
                }

                var why = await retry.ConfigureAwait(false);
                if (why == Retry.Silent)
                {
                    // Neither an answer nor every receiver's decline came in time: a receiver that was unsubscribing
                    // from the shard (a handover), or an owner stored it and died before answering. Reads are safe to send
                    // again, and so is a change: an owner handles a number once (RedisBus.Order.cs), and the Redis authority
                    // stores a sender's publish once, answering a repeat with the seqs it stored, even when a stalled
                    // owner's copy turns up after the resend was stored elsewhere (PublishRequest.Origin).
                    LogRequestSilent(_logger, shard, OverdueAfter.TotalSeconds);
                    _metrics.RequestResent();
                    continue;
                }

                if (why == Retry.Declined)
                {
                    // Every instance that got it declined: none handled it. One that could not claim the shard for lack
                    // of Redis says why, and the caller learns it now; otherwise sending it again is safe for any request.
                    if (pending.Unavailable is { } reason)
                    {
                        _metrics.RequestFailed();
                        return new ErrorReply(new RelayError(ErrorCodes.Unavailable, reason));
                    }

                    _pending.TryRemove(correlation, out _);
                    LogRequestDeclined(_logger, shard, receivers);
                    _metrics.RequestResent();
                    if (ticket is null)
                    {
                        await Task.Delay(DeclinedResendDelay, timeout.Token).ConfigureAwait(false);
                    }

                    continue;
                }

                // The reply subscription went away after this attempt went out: its answer may have been lost.
                if (IsRepeatable(request))
                {
                    LogRequestRepeated(_logger, shard);
                    _metrics.RequestResent();
                    continue;
                }

                try
                {
                    return await pending.Reply.Task.WaitAsync(InDoubtGrace, timeout.Token).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    _metrics.RequestFailed();
                    return new ErrorReply(new RelayError(ErrorCodes.Unavailable, $"the bus reconnected to Redis while routing shard {shard} handled the request, and its answer was lost; it may have been applied: try again"));
                }
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            _metrics.RequestFailed();
            return new ErrorReply(new RelayError(ErrorCodes.Unavailable, $"routing shard {shard} did not answer within {_options.RequestTimeout.TotalSeconds:0.#} s; try again"));
        }
        catch (Exception e) when (e is RedisException or InvalidOperationException or TimeoutException)
        {
            _metrics.RequestFailed();
            return new ErrorReply(new RelayError(ErrorCodes.Unavailable, $"the bus is unavailable ({e.Message}); try again"));
        }
        finally
        {
            foreach (var correlation in pending.Correlations)
            {
                _pending.TryRemove(correlation, out _);
            }

            ticket?.Order.Settled(ticket);
        }
    }

    // Publishes one attempt of a request on its shard's channel; a request that changes a channel goes out numbered, in
    // its number's order, and when sent again, with the others sent again, in order, after DeclinedResendDelay
    // (RedisBus.Order.cs).
    private Task<long> PublishRequestAsync(int shard, long correlation, RoutingRequest request, OrderTicket? ticket, bool again) =>
        ticket is null
            ? Database.PublishAsync(ShardChannel(shard), BusCodec.EncodeRequest(correlation, _replyChannelName, request))
            : ticket.Order.Send(ticket, again, order => Database.PublishAsync(ShardChannel(shard), BusCodec.EncodeRequest(correlation, _replyChannelName, request, order)));

    // Waits until the reply subscription is up and returns its generation: read while the gate is open, so a loss after
    // it (the gate closes first, then the generation moves on) marks the attempt in doubt when the subscription is back.
    private async Task<long> ReplySubscriptionAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var ready = _replyReady;
            await ready.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            var generation = Volatile.Read(ref _replyGeneration);
            if (ReferenceEquals(ready, _replyReady))
            {
                return generation;
            }
        }
    }

    // An attempt that reached a receiver and heard nothing back for this long is sent again. Routing answers in
    // milliseconds; a publish waiting for replicas takes up to ReplicationTimeout (1 s by default, validated below
    // RequestTimeout), so the wait is at least twice that.
    private TimeSpan OverdueAfter => TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(2).Ticks, 2 * _options.ReplicationTimeout.Ticks));

    private ITimer? _overdueSweep;

    // Whether this instance serves routing (its lease loop runs): only then does it claim a shard nobody holds.
    private bool _servingRouting;

    // One timer for the bus, not one per request: twice a second it tells every attempt past OverdueAfter to go again.
    private void EnsureOverdueSweep()
    {
        if (Volatile.Read(ref _overdueSweep) is not null)
        {
            return;
        }

        var timer = _time.CreateTimer(_ => SweepOverdue(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        if (Interlocked.CompareExchange(ref _overdueSweep, timer, null) is null)
        {
            timer.Change(TimeSpan.FromMilliseconds(500), TimeSpan.FromMilliseconds(500));
        }
        else
        {
            timer.Dispose();
        }
    }

    private void SweepOverdue()
    {
        if (_stopping.IsCancellationRequested)
        {
            Volatile.Read(ref _overdueSweep)?.Dispose();
            return;
        }

        var now = _time.GetTimestamp();
        var limit = OverdueAfter;
        foreach (var pending in _pending.Values)
        {
            pending.Overdue(_time.GetElapsedTime(pending.SentAt, now), limit);
        }
    }

    // Whether sending a request twice does what sending it once does: reads, and publishes. This bus numbers every publish
    // (RedisBus.Order.cs) and the store keeps what each number of its sender stored (PublishRequest.Origin): a repeat is
    // stored nothing and answered with the first handling's seqs, with or without ids. A presence change would announce
    // itself twice.
    private static bool IsRepeatable(RoutingRequest request) =>
        request is HistoryRequest or PositionRequest or PresenceGetRequest or PresenceEventsRequest or PublishRequest;

    // A shard's request channel. In Redis Cluster a plain PUBLISH answers how many subscribers the node that ran it has,
    // not the cluster, and a 0 sends the request again (RedisClusterProcessTests: a publish appended twice, 52 ms apart,
    // with routing in another process); a sharded channel (SSUBSCRIBE/SPUBLISH) lives on its slot's master, where every
    // subscriber is, so "nobody listening" is true there.
    private RedisChannel ShardChannel(int shard) =>
        _isCluster ? RedisChannel.Sharded(RedisKeys.Shard(shard).ToString()) : RedisKeys.Shard(shard);

    // Publishes a probe on this process's reply channel and waits (briefly) for it to come back through the subscription.
    private async Task<bool> ReplyChannelHearsAsync()
    {
        var number = Interlocked.Increment(ref _probes);
        var heard = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _probe, new ReplyProbe(number, heard));
        await Database.PublishAsync(_replyChannel, Encoding.ASCII.GetBytes($"probe:{number}")).ConfigureAwait(false);
        try
        {
            await heard.Task.WaitAsync(ProbeWait).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private void OnReply(ReadOnlyMemory<byte> frame)
    {
        if (frame.Span.StartsWith(ProbePrefix))
        {
            if (Utf8Parser.TryParse(frame.Span[ProbePrefix.Length..], out long number, out _) && Volatile.Read(ref _probe) is { } probe && probe.Number == number)
            {
                probe.Heard.TrySetResult();
            }

            return;
        }

        if (frame.Span.StartsWith(DeclinedPrefix))
        {
            // "declined:<correlation>", or with ":<reason>" when the instance could not claim the shard for lack of Redis.
            var rest = frame.Span[DeclinedPrefix.Length..];
            if (Utf8Parser.TryParse(rest, out long declined, out var used) && (used == rest.Length || rest[used] == (byte)':')
                && _pending.TryGetValue(declined, out var declinedRequest))
            {
                declinedRequest.Declined(declined, used == rest.Length ? null : Encoding.UTF8.GetString(rest[(used + 1)..]));
            }

            return;
        }

        var (correlation, reply) = BusCodec.DecodeReply(frame);
        if (_pending.TryGetValue(correlation, out var waiting))
        {
            waiting.Reply.TrySetResult(reply);
        }
    }

    private static byte[] EncodeDeclined(long correlation, string? unavailable = null)
    {
        Span<byte> digits = stackalloc byte[20];
        Utf8Formatter.TryFormat(correlation, digits, out var written);
        return unavailable is null ? [.. DeclinedPrefix, .. digits[..written]] : [.. DeclinedPrefix, .. digits[..written], (byte)':', .. Encoding.UTF8.GetBytes(unavailable)];
    }

    // While the subscription connection is away, replies published to this process would be lost: requests wait (within
    // their timeout) until it is back, and those already sent are in doubt.
    private void CloseReplyGate()
    {
        lock (_replyGate)
        {
            if (_replyReady.Task.IsCompleted)
            {
                _replyReady = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }

            Interlocked.Increment(ref _replyGeneration);
        }
    }

    private void OpenReplyGate()
    {
        long generation;
        lock (_replyGate)
        {
            _replyReady.TrySetResult();
            generation = Volatile.Read(ref _replyGeneration);
        }

        // Requests sent before the loss: their answers may have been published to nobody. Each is sent again or answered
        // now (SendToRoutingAsync), instead of waiting out RequestTimeout for an answer that will never come.
        foreach (var pending in _pending.Values)
        {
            pending.SentBefore(generation);
        }
    }

    private static TaskCompletionSource Ready()
    {
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        ready.SetResult();
        return ready;
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
        RedisKey[] tickKeys = [RedisKeys.Routers, RedisKeys.Fences, .. _leaseKeys];
        Volatile.Write(ref _servingRouting, true);
        try
        {
            await ReadyAsync().WaitAsync(stoppingToken).ConfigureAwait(false);
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    var owned = (RedisResult[])(await s_leaseTick.EvaluateAsync(Database, tickKeys, [InstanceId, ttlMs]).ConfigureAwait(false))!;
                    var now = new Dictionary<int, string>();
                    for (var i = 0; i + 1 < owned.Length; i += 2)
                    {
                        now[(int)(long)owned[i]] = (string)owned[i + 1]!;
                    }

                    foreach (var shard in _fences.Keys.Where(s => !now.ContainsKey(s)).ToList())
                    {
                        _fences.TryRemove(shard, out _);
                    }

                    foreach (var shard in _ownedShards.Keys.Where(s => !now.ContainsKey(s)).ToList())
                    {
                        _ownedShards.TryRemove(shard, out _);
                        await UnsubscribeAsync(ShardChannel(shard)).ConfigureAwait(false);
                        LogShardLost(_logger, shard, InstanceId);
                    }

                    foreach (var (shard, token) in now)
                    {
                        _fences[shard] = token;
                        if (!_ownedShards.ContainsKey(shard))
                        {
                            await SubscribeAsync(ShardChannel(shard), frame => OnRoutingRequest(handler, frame)).ConfigureAwait(false);
                            _ownedShards[shard] = true;
                            LogShardOwned(_logger, shard, InstanceId);
                        }
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

        // Requests still in the shard channels' queues are declined from now on, not claimed: a lease claimed by an
        // instance that stopped renewing would keep the shard from the instances that go on for a whole lease time.
        Volatile.Write(ref _servingRouting, false);
        foreach (var shard in _ownedShards.Keys)
        {
            await IgnoreFailure(UnsubscribeAsync(ShardChannel(shard))).ConfigureAwait(false);
        }

        _ownedShards.Clear();
        _fences.Clear();
        if (_database is not null)
        {
            await IgnoreFailure(s_leaseRelease.EvaluateAsync(_database, tickKeys, [InstanceId])).ConfigureAwait(false);
        }
    }

    // In the shard channel's queue, one request at a time: the handler starts synchronously (its Redis commands go out in
    // request order); the reply is published when it completes.
    private void OnRoutingRequest(IRoutingHandler handler, ReadOnlyMemory<byte> frame)
    {
        var (correlation, replyTo, request, order) = BusCodec.DecodeOrderedRequest(frame);
        if (order.IsSet)
        {
            // A change that came before an earlier one of its caller (that one is being sent again): declined, so it is
            // sent again after it.
            var shard = ShardOf(request.App, request.Channel);
            if (!_fences.TryGetValue(shard, out var fence))
            {
                // No fence: this instance let the shard go, and its queue still hands it requests. Not given to the handler,
                // which reads the fence when it runs and may find one a claim or a lease tick put in place a moment later:
                // stored there unadmitted, a later change was stored before an earlier one, and the earlier one, sent again,
                // was refused by the store as handled before and answered by nobody (DrainedRequestTests). It goes the way
                // the handler's NotOwnerReply would send it: a claim, then the admission.
                _ = ReplyAsync(handler, correlation, replyTo, request, order, new ValueTask<RoutingReply>(NotOwnerReply.Instance));
                return;
            }

            switch (AdmitAndStart(handler, request, shard, fence, replyTo, order, out var handling))
            {
                case Admission.Decline:
                    _ = IgnoreFailure(Database.PublishAsync(RedisChannel.Literal(replyTo), EncodeDeclined(correlation)));
                    return;
                case Admission.Repeat when !IsRepeatable(request):
                    // A presence change handled here already: its first handling answers (any attempt's answer settles the
                    // caller's request). A publish goes to the store again, which answers it with what it stored: its
                    // first answer may be lost, and the caller would wait out RequestTimeout (LostAnswerResendTests).
                    return;
            }

            _ = ReplyAsync(handler, correlation, replyTo, request, order, handling);
            return;
        }

        _ = ReplyAsync(handler, correlation, replyTo, request, order, Handle(handler, request));
    }

    // The fence an ordered request was admitted under, while its handler starts on this thread (the authority reads the
    // fence before its first await): FenceFor answers it for that shard, so the request is written under the fence its
    // admission was decided on, never under one a concurrent lease tick or claim put in place in between. A request
    // admitted under a fence this instance has just lost is fenced out by Redis instead (NotOwnerReply).
    [ThreadStatic]
    private static RedisBus? t_admittedBus;

    [ThreadStatic]
    private static int t_admittedShard;

    [ThreadStatic]
    private static string? t_admittedFence;

    private bool TryAdmittedFence(int shard, out string? fence)
    {
        fence = t_admittedFence;
        return ReferenceEquals(t_admittedBus, this) && t_admittedShard == shard;
    }

    private ValueTask<RoutingReply> HandleAdmitted(IRoutingHandler handler, RoutingRequest request, int shard, string fence)
    {
        t_admittedBus = this;
        t_admittedShard = shard;
        t_admittedFence = fence;
        try
        {
            return Handle(handler, request);
        }
        finally
        {
            t_admittedBus = null;
            t_admittedFence = null;
        }
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

    private async Task ReplyAsync(IRoutingHandler handler, long correlation, string replyTo, RoutingRequest request, RequestOrder order, ValueTask<RoutingReply> handling)
    {
        var reply = await Settle(handling).ConfigureAwait(false);

        // Fenced out. When nobody holds the shard's lease (it ran out, or Redis restarted and lost or expired it), the
        // instances still listening race to claim it, and the one that wins handles the request at once instead of
        // leaving its caller to time out. When another instance holds it, that owner answers. When Redis refuses the
        // claim (NOREPLICAS while a promoted Sentinel master has no replica yet, OOM, a failover), nobody can take the
        // shard now: this instance declines with the reason, and a caller whose every receiver declined is told so at
        // once (50300, try again) rather than left to wait out RequestTimeout.
        if (reply is NotOwnerReply)
        {
            // Not handled: if it was admitted, none of its caller's later changes may be handled before it is.
            var shard = ShardOf(request.App, request.Channel);
            ForgetOrder(shard, order);
            if (!Volatile.Read(ref _servingRouting))
            {
                await IgnoreFailure(Database.PublishAsync(RedisChannel.Literal(replyTo), EncodeDeclined(correlation))).ConfigureAwait(false);
                return;
            }

            string? claimed;
            try
            {
                claimed = (string?)await s_leaseClaim.EvaluateAsync(
                    Database,
                    [_leaseKeys[shard], RedisKeys.Fences],
                    [InstanceId, (long)_options.LeaseTtl.TotalMilliseconds, shard]).ConfigureAwait(false);
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                // A decline with the reason, not an answer: an owner that got the request too answers it, and the
                // caller reports the reason only when every instance it reached declined (an error sent here could
                // overtake the owner's success, and a publish retried on it would be stored twice).
                await IgnoreFailure(Database.PublishAsync(
                    RedisChannel.Literal(replyTo),
                    EncodeDeclined(correlation, $"routing shard {shard} has no owner and Redis refused the claim ({e.Message}); try again"))).ConfigureAwait(false);
                return;
            }

            if (claimed is not null)
            {
                if (claimed.Length == 0)
                {
                    // Another instance holds the lease. It answers if it got the request too; if it did not (it took the
                    // shard and is not subscribed yet, e.g. right after Redis restarted), the caller sees every instance
                    // it reached decline and sends the request again.
                    await IgnoreFailure(Database.PublishAsync(RedisChannel.Literal(replyTo), EncodeDeclined(correlation))).ConfigureAwait(false);
                    return;
                }

                _fences[shard] = claimed;
                var admission = AdmitAndStart(handler, request, shard, claimed, replyTo, order, out var claimedHandling);
                if (admission == Admission.Decline)
                {
                    await IgnoreFailure(Database.PublishAsync(RedisChannel.Literal(replyTo), EncodeDeclined(correlation))).ConfigureAwait(false);
                    return;
                }

                if (admission == Admission.Repeat && !IsRepeatable(request))
                {
                    return;
                }

                reply = await Settle(claimedHandling).ConfigureAwait(false);
            }

            if (reply is NotOwnerReply)
            {
                ForgetOrder(shard, order);
                await IgnoreFailure(Database.PublishAsync(RedisChannel.Literal(replyTo), EncodeDeclined(correlation))).ConfigureAwait(false);
                return;
            }
        }

        // A late copy of an attempt its caller sent again, stored the first time (PublishRequest.Origin): that answer stands.
        if (reply is HandledBeforeReply)
        {
            return;
        }

        await IgnoreFailure(Database.PublishAsync(RedisChannel.Literal(replyTo), BusCodec.EncodeReply(correlation, reply))).ConfigureAwait(false);
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

    [LoggerMessage(EventId = 2050, Level = LogLevel.Debug, Message = "Every routing instance that got a request for shard {Shard} ({Receivers}) declined it (none holds the shard's lease and listens yet): sending it again")]
    private static partial void LogRequestDeclined(ILogger logger, int shard, long receivers);

    [LoggerMessage(EventId = 2051, Level = LogLevel.Information, Message = "The reply subscription was lost while a request for shard {Shard} waited for its answer: sending it again (it is safe to repeat)")]
    private static partial void LogRequestRepeated(ILogger logger, int shard);

    [LoggerMessage(EventId = 2052, Level = LogLevel.Information, Message = "A request for routing shard {Shard} heard nothing back within {Seconds} s (a routing instance unsubscribing from the shard dropped it): sending it again")]
    private static partial void LogRequestSilent(ILogger logger, int shard, double seconds);

    private sealed record ReplyProbe(long Number, TaskCompletionSource Heard);

    private enum Retry
    {
        // Every routing instance the attempt reached declined it.
        Declined,

        // The reply subscription was lost after the attempt went out.
        InDoubt,

        // The attempt reached receivers, and neither an answer nor all their declines came within OverdueAfter.
        Silent,
    }

    // One request while it waits for its answer, across its attempts.
    private sealed class PendingRequest
    {
        private readonly Lock _gate = new();
        private readonly List<long> _correlations = [];
        private long _correlation;
        private long _generation;
        private long _receivers;
        private int _declined;
        private TaskCompletionSource<Retry> _retry = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource<RoutingReply> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public List<long> Correlations
        {
            get
            {
                lock (_gate)
                {
                    return [.. _correlations];
                }
            }
        }

        // A new attempt, sent while the reply subscription was in <paramref name="generation"/>: what completes says why
        // to send it again.
        public Task<Retry> Begin(long correlation, long generation)
        {
            lock (_gate)
            {
                _correlations.Add(correlation);
                _correlation = correlation;
                _generation = generation;
                _receivers = -1;
                _declined = 0;
                Unavailable = null;
                _retry = new TaskCompletionSource<Retry>(TaskCreationOptions.RunContinuationsAsynchronously);
                return _retry.Task;
            }
        }

        // When the current attempt's PUBLISH was answered (a timestamp of the bus's TimeProvider; 0 before).
        public long SentAt { get; private set; }

        // The attempt's PUBLISH reached this many routing instances (declines may have come first).
        public void Reached(long correlation, long receivers, long now)
        {
            lock (_gate)
            {
                if (correlation == _correlation)
                {
                    _receivers = receivers;
                    SentAt = now;
                    if (_declined >= receivers)
                    {
                        _retry.TrySetResult(Retry.Declined);
                    }
                }
            }
        }

        // Why an instance that declined the current attempt could not take the shard (Redis refused its claim), if one said.
        public string? Unavailable { get; private set; }

        public void Declined(long correlation, string? unavailable)
        {
            lock (_gate)
            {
                if (correlation == _correlation && unavailable is not null)
                {
                    Unavailable = unavailable;
                }

                if (correlation == _correlation && ++_declined >= _receivers && _receivers >= 0)
                {
                    _retry.TrySetResult(Retry.Declined);
                }
            }
        }

        // Called by the sweep with how long ago the current attempt went out.
        public void Overdue(TimeSpan elapsed, TimeSpan limit)
        {
            lock (_gate)
            {
                if (_receivers > 0 && elapsed > limit)
                {
                    _retry.TrySetResult(Retry.Silent);
                }
            }
        }

        // The reply subscription is back after a loss that made it <paramref name="generation"/>.
        public void SentBefore(long generation)
        {
            lock (_gate)
            {
                if (_correlation != 0 && _generation < generation)
                {
                    _retry.TrySetResult(Retry.InDoubt);
                }
            }
        }
    }
}
