using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus.FanOut;
using Relay.Bus.Redis;
using Relay.Bus.Routing;
using Relay.Core.Channels;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using StackExchange.Redis;

namespace Relay.Bus.Dapr;

/// <summary>
/// The bus between processes over Dapr sidecars (<c>Relay:Bus=dapr</c>), through each sidecar's HTTP API:
/// routing requests by service invocation (<c>/v1.0/invoke/{RoutingAppId}/method/dapr-relay/routing</c>), sequenced
/// messages, interest changes and node batches by pub/sub (<c>/v1.0/publish/{PubSub}/{topic}</c>), received as
/// CloudEvents on the routes <see cref="DaprBusEndpoints"/> maps and declares in <c>GET /dapr/subscribe</c>.
/// </summary>
/// <remarks>
/// Channel state (seq, history, presence, idempotency) stays in Redis: routing serves the Redis bus's channel authority,
/// fenced by the Redis bus's shard leases, and its append script publishes each sequenced message on the shard's Redis
/// channel, which this bus forwards to the sequenced topic in the order Redis ran the scripts. Dapr pub/sub is at least
/// once and unordered, so <see cref="MayLoseDeliveries"/> is true: nodes repair gaps from history and drop seqs they
/// passed; interest changes carry a version and fan-out keeps the newest; a node that gains interest in a channel is
/// told to check it (what was sequenced before fan-out knew is read back).
/// </remarks>
public sealed partial class DaprBus : IRelayBus, IAsyncDisposable
{
    internal const byte BatchKind = (byte)'B';
    internal const byte InterestKind = (byte)'I';
    internal const byte ResyncKind = (byte)'R';

    // Requests in flight to routing at once, one batch per lane: channels hash onto lanes (by routing shard), so one
    // channel's requests go one batch after another. 16 is the default shard count: one lane per shard.
    private const int RoutingLanes = 16;

    // Requests packed into one invocation at most (the rest wait for the next).
    private const int MaxRequestsPerInvocation = 128;

    // An interest change's count that says the node stopped: fan-out forgets it (as the Redis bus's node-gone frame).
    private const int NodeGone = -2;

    private readonly DaprBusOptions _options;
    private readonly RedisBus _redis;
    private readonly RedisConnector _connector;
    private readonly ILogger<DaprBus> _logger;
    private readonly HttpClient _http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(2) }) { Timeout = Timeout.InfiniteTimeSpan };
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<(string Topic, string? Key, byte Kind), DaprTopicOutbox> _outboxes = new();
    private readonly ConcurrentDictionary<string, DaprNodeInbox> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Node, string App, string Channel), (long Version, int Subscribers)> _interest = [];
    private readonly Lock _interestGate = new();
    private readonly TimeProvider _time;
    private readonly Uri _routingUri;
    private readonly Uri _interestUri;
    private readonly RoutingLane[] _lanes;
    private readonly string[] _shardKeys;
    private readonly DaprFanOutDedupe _fanOutSeen;
    private readonly FanOutShard[] _fanOutShards;
    private long _interestVersion;
    private volatile IRoutingHandler? _routing;
    private volatile IFanOutHandler? _fanOut;
    private int _disposed;

    [ThreadStatic]
    private static (RelayMessage Message, byte[] Frame) t_lastEncoded;

    /// <summary>Creates the bus; it talks to the sidecar on first use.</summary>
    public DaprBus(IOptions<DaprBusOptions> options, RedisBus redis, RedisConnector connector, ILogger<DaprBus> logger, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _redis = redis;
        _connector = connector;
        _logger = logger;
        _routingUri = new Uri(_options.ResolvedHttpEndpoint, $"v1.0/invoke/{Uri.EscapeDataString(_options.RoutingAppId)}/method/{DaprBusEndpoints.RoutingMethod}");
        _interestUri = new Uri(_options.ResolvedHttpEndpoint, $"v1.0/invoke/{Uri.EscapeDataString(_options.FanOutAppId)}/method/{DaprBusEndpoints.InterestMethod}");
        _lanes = [.. Enumerable.Range(0, RoutingLanes).Select(_ => new RoutingLane(this))];
        _shardKeys = [.. Enumerable.Range(0, redis.Options.Shards).Select(static s => "shard-" + s.ToString(System.Globalization.CultureInfo.InvariantCulture))];

        _time = time ?? TimeProvider.System;
        _fanOutSeen = new DaprFanOutDedupe(_time);
        _fanOutShards = [.. Enumerable.Range(0, redis.Options.Shards).Select(static _ => new FanOutShard())];

        // Versions of a restarted process start above the last one's: microseconds of the wall clock.
        _interestVersion = _time.GetUtcNow().ToUnixTimeMilliseconds() * 1000;
    }

    /// <summary>The bus's settings (<c>Relay:Dapr</c>).</summary>
    public DaprBusOptions Options => _options;

    /// <inheritdoc />
    public bool MayLoseDeliveries => true;

    internal bool ServesRouting => _routing is not null;

    internal bool ServesFanOut => _fanOut is not null;

    internal ICollection<string> NodeIds => _nodes.Keys;

    /// <summary>Redelivered copies of sequenced messages fan-out dropped instead of passing them on to nodes again.</summary>
    public long FanOutCopiesDropped => _fanOutSeen.Dropped;

    /// <inheritdoc />
    public async ValueTask<RoutingReply> SendToRoutingAsync(RoutingRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (Volatile.Read(ref _disposed) == 1)
        {
            return Unavailable("the Dapr bus is stopping; try again");
        }

        var pending = new PendingRequest(BusCodec.EncodeRequest(0, "", request));
        _lanes[_redis.ShardOf(request.App, request.Channel) % _lanes.Length].Post(pending);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        timeout.CancelAfter(_options.RequestTimeout);
        try
        {
            var reply = await pending.Reply.Task.WaitAsync(timeout.Token).ConfigureAwait(false);

            // A subscription asks its channel's position when it starts: the nodes here learn where the channel stands,
            // so its next message needs no reorder hold.
            ChannelPosition? known = reply switch
            {
                PositionReply answer => answer.Position,
                HistoryReply answer => answer.Position,
                _ => null,
            };
            if (known is { } position)
            {
                foreach (var inbox in _nodes.Values)
                {
                    inbox.Known(request.App, request.Channel, position.Epoch, position.Seq);
                }
            }

            return reply;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return Unavailable($"the routing service did not answer within {_options.RequestTimeout.TotalSeconds:0.#} s; try again");
        }
        finally
        {
            // Not sent yet: the lane skips it.
            pending.Reply.TrySetCanceled(CancellationToken.None);
        }
    }

    // One lane's requests, as many as are waiting, in one invocation: the lane sends the next only when this one is
    // answered, so requests of one channel reach routing in the order they were made (concurrent invocations could
    // overtake each other, and publishes sent without waiting must be sequenced in send order).
    private async Task<(RoutingReply[]? Replies, string? Error)> InvokeRoutingAsync(ReadOnlyMemory<byte> batch, int count)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        timeout.CancelAfter(_options.RequestTimeout);
        try
        {
            using var content = new ReadOnlyMemoryContent(batch);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var answer = await _http.PostAsync(_routingUri, content, timeout.Token).ConfigureAwait(false);
            if (!answer.IsSuccessStatusCode)
            {
                return (null, $"the routing service (Dapr app id '{_options.RoutingAppId}') answered {(int)answer.StatusCode} through the sidecar; try again");
            }

            var body = await answer.Content.ReadAsByteArrayAsync(timeout.Token).ConfigureAwait(false);
            var replies = new RoutingReply[count];
            var i = 0;
            foreach (var frame in BusCodec.ReadBatch(body))
            {
                if (i < count)
                {
                    replies[i] = BusCodec.DecodeReply(frame).Reply;
                }

                i++;
            }

            return i == count ? (replies, null) : (null, $"the routing service answered {i} replies to {count} requests; try again");
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !_stopping.IsCancellationRequested)
        {
            return (null, $"the routing service did not answer within {_options.RequestTimeout.TotalSeconds:0.#} s; try again");
        }
        catch (HttpRequestException e)
        {
            return (null, $"the Dapr sidecar at {_options.ResolvedHttpEndpoint} is unavailable ({e.Message}); try again");
        }
        catch (FormatException e)
        {
            LogBadFrame(_logger, "routing reply", e);
            return (null, "the routing service answered something unreadable; try again");
        }
    }

    // An invoked batch of routing requests, in this process's routing: handled by the Redis channel authority, each
    // started in the batch's order (its Redis commands go out in that order), then answered together. Until the Redis
    // bus's lease loop holds the channel's shard (start-up, a handover) the authority answers not-owner: that request is
    // tried again within the request's time, as the Redis bus's callers wait for the next owner.
    internal async Task<byte[]> HandleRoutingAsync(ReadOnlyMemory<byte> batch, CancellationToken cancellationToken)
    {
        var requests = new List<RoutingRequest>();
        foreach (var frame in BusCodec.ReadBatch(batch))
        {
            requests.Add(BusCodec.DecodeRequest(frame).Request);
        }

        var replies = new ArrayBufferWriter<byte>(256 * requests.Count + 16);
        if (_routing is not { } routing)
        {
            foreach (var _ in requests)
            {
                BusCodec.AppendToBatch(replies, BusCodec.EncodeReply(0, Unavailable("no routing service is running in this process; try again")));
            }

            return replies.WrittenSpan.ToArray();
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        deadline.CancelAfter(_options.RequestTimeout);
        var handling = new Task<RoutingReply>[requests.Count];
        for (var i = 0; i < handling.Length; i++)
        {
            handling[i] = SettleAsync(routing, requests[i], deadline.Token);
        }

        for (var i = 0; i < handling.Length; i++)
        {
            var reply = await handling[i].ConfigureAwait(false);
            try
            {
                // Invocation picks any instance of the routing app id; the channel's shard may be leased by another one
                // (or by none, between owners). The Redis bus's request channel reaches whichever holds it: its lease
                // loop listens there for the shards it holds, and a request nobody holds waits for the next owner.
                if (reply is NotOwnerReply)
                {
                    reply = await _redis.SendToRoutingAsync(requests[i], deadline.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested)
            {
                reply = Unavailable("no routing instance holds this channel's shard yet; try again");
            }

            BusCodec.AppendToBatch(replies, BusCodec.EncodeReply(0, reply));
        }

        return replies.WrittenSpan.ToArray();
    }

    private async Task<RoutingReply> SettleAsync(IRoutingHandler routing, RoutingRequest request, CancellationToken cancellationToken)
    {
        try
        {
            return await routing.HandleAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            return Unavailable($"routing could not reach Redis ({e.Message}); try again");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogRoutingFailed(_logger, e);
            return new ErrorReply(new RelayError(ErrorCodes.Internal, "routing failed"));
        }
    }

    /// <inheritdoc />
    public ValueTask PublishSequencedAsync(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        SequencedOutbox(_redis.ShardOf(message.App, message.Channel)).Post(BusCodec.EncodeSequenced(message));
        return ValueTask.CompletedTask;
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

        Outbox(_options.NodeTopic(nodeId), BatchKind, nodeId).Post(frame);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    /// <remarks>
    /// Invoked on fan-out and awaited, so fan-out knows a node's interest before the node's subscriber is told it is
    /// subscribed (a message sequenced after that reaches the node). When the invocation fails, the change goes on the
    /// interest topic instead (at least once, versioned) and never fails the caller.
    /// </remarks>
    public async ValueTask SendInterestAsync(InterestChange change)
    {
        ArgumentNullException.ThrowIfNull(change);
        if (Volatile.Read(ref _disposed) == 1)
        {
            // Stopping: fan-out forgets this node when it hears it is gone.
            return;
        }

        var frame = EncodeInterest(change, Interlocked.Increment(ref _interestVersion));
        var batch = new ArrayBufferWriter<byte>(frame.Length + 8);
        batch.GetSpan(1)[0] = InterestKind;
        batch.Advance(1);
        BusCodec.AppendToBatch(batch, frame);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        timeout.CancelAfter(_options.RequestTimeout);
        try
        {
            using var content = new ReadOnlyMemoryContent(batch.WrittenMemory);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var answer = await _http.PostAsync(_interestUri, content, timeout.Token).ConfigureAwait(false);
            if (answer.IsSuccessStatusCode)
            {
                return;
            }

            LogInterestByTopic(_logger, $"fan-out (Dapr app id '{_options.FanOutAppId}') answered {(int)answer.StatusCode}");
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or ObjectDisposedException)
        {
            LogInterestByTopic(_logger, e.Message);
        }

        if (!_stopping.IsCancellationRequested)
        {
            Outbox(_options.InterestTopic, InterestKind).Post(frame);
        }
    }

    /// <inheritdoc />
    public async ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken)
    {
        if (_fanOut is { } local)
        {
            return await local.QueryChannelsAsync(app, prefix, cancellationToken).ConfigureAwait(false);
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        timeout.CancelAfter(_options.RequestTimeout);
        var query = $"v1.0/invoke/{Uri.EscapeDataString(_options.FanOutAppId)}/method/{DaprBusEndpoints.ChannelsMethod}?app={Uri.EscapeDataString(app)}&prefix={Uri.EscapeDataString(prefix ?? "")}";
        var counts = await _http.GetFromJsonAsync<List<DaprBusEndpoints.ChannelCountJson>>(new Uri(_options.ResolvedHttpEndpoint, query), timeout.Token).ConfigureAwait(false);
        return counts is null ? [] : [.. counts.Select(static c => new ChannelCount(c.Channel, c.Subscribers))];
    }

    /// <inheritdoc />
    public IDisposable ServeRouting(IRoutingHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (Interlocked.CompareExchange(ref _routing, handler, null) is not null)
        {
            throw new InvalidOperationException("a routing service is already registered on this Dapr bus");
        }

        // The Redis bus's lease loop gives the authority its fencing tokens (requests never reach it over Redis: nobody
        // publishes them there); the forwarder carries what the append and presence scripts publish to the Dapr topic.
        var leases = _redis.ServeRouting(handler);
        var forwarding = new CancellationTokenSource();
        var forwarder = ForwardSequencedAsync(forwarding.Token);
        return new Registration(() =>
        {
            forwarding.Cancel();
            forwarder.Wait(TimeSpan.FromSeconds(10));
            forwarding.Dispose();
            leases.Dispose();
            Interlocked.CompareExchange(ref _routing, null, handler);
        });
    }

    /// <inheritdoc />
    public IDisposable ServeFanOut(IFanOutHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (Interlocked.CompareExchange(ref _fanOut, handler, null) is not null)
        {
            throw new InvalidOperationException("a fan-out service is already registered on this Dapr bus");
        }

        // Instances of the fan-out app id share the shards by the Redis bus's fan-out leases (DaprBus.FanOut.cs).
        var sweeping = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        _ = SweepFanOutAsync(sweeping.Token);
        var leasing = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        var leases = Task.Run(() => FanOutLoopAsync(handler, leasing.Token));
        return new Registration(() =>
        {
            sweeping.Cancel();
            sweeping.Dispose();
            leasing.Cancel();
            leases.Wait(TimeSpan.FromSeconds(10));
            leasing.Dispose();
            Interlocked.CompareExchange(ref _fanOut, null, handler);
        });
    }

    // Forgets idle channels' seqs in fan-out's dedupe, once a minute.
    private async Task SweepFanOutAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromMinutes(1), _time, cancellationToken).ConfigureAwait(false);
                _fanOutSeen.Sweep();
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // Fan-out stopped.
        }
    }

    /// <inheritdoc />
    public IDisposable ServeNode(string nodeId, INodeHandler handler)
    {
        ArgumentNullException.ThrowIfNull(nodeId);
        ArgumentNullException.ThrowIfNull(handler);
        var inbox = new DaprNodeInbox(handler, _options.ReorderHold, _time, Observe);
        if (!_nodes.TryAdd(nodeId, inbox))
        {
            throw new InvalidOperationException($"ingress node '{nodeId}' is already registered on this Dapr bus");
        }

        var sweeping = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        _ = SweepAsync(inbox, sweeping.Token);
        return new Registration(() =>
        {
            sweeping.Cancel();
            sweeping.Dispose();
            _nodes.TryRemove(new KeyValuePair<string, DaprNodeInbox>(nodeId, inbox));
            Outbox(_options.InterestTopic, InterestKind).Post(EncodeInterest(new InterestChange(nodeId, "", "", NodeGone), Interlocked.Increment(ref _interestVersion)));
        });
    }

    // Releases what a node's inbox held past the hold, a few times per hold.
    private async Task SweepAsync(DaprNodeInbox inbox, CancellationToken cancellationToken)
    {
        if (_options.ReorderHold <= TimeSpan.Zero)
        {
            return;
        }

        var period = _options.ReorderHold / 4;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(period, _time, cancellationToken).ConfigureAwait(false);
                inbox.Sweep();
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // The node stopped.
        }
    }

    // Whether this routing instance forwards a shard's frames now: while it holds the shard's routing lease, and for one
    // lease time after (what it appended just before a handover still reaches its channel after; the new owner
    // forwards from its first append on). Both forward meanwhile; fan-out and nodes drop seqs they passed. Only the
    // subscription's own queue calls it for a shard, one frame at a time.
    private bool Forwards(ShardForwarding forwarding)
    {
        var now = _time.GetTimestamp();
        if (_redis.HoldsRoutingShard(forwarding.Shard))
        {
            forwarding.HeldAt = now;
            return true;
        }

        return forwarding.HeldAt != 0 && _time.GetElapsedTime(forwarding.HeldAt, now) < _redis.Options.LeaseTtl;
    }

    private sealed class ShardForwarding(int shard)
    {
        public int Shard { get; } = shard;

        // TimeProvider timestamp of the last frame forwarded while the lease was held here; 0: never.
        public long HeldAt { get; set; }
    }

    // Subscribes to every fan-out shard's Redis channel (one subscription queue each, handled in the order Redis
    // published) and posts each sequenced frame to the sequenced topic's outbox, until cancelled.
    private async Task ForwardSequencedAsync(CancellationToken cancellationToken)
    {
        var queues = new List<ChannelMessageQueue>();
        try
        {
            await _redis.ReadyAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
            var subscriber = (await _connector.ConnectAsync().ConfigureAwait(false)).GetSubscriber();
            for (var shard = 0; shard < _redis.Options.Shards; shard++)
            {
                var outbox = SequencedOutbox(shard);
                var forwarding = new ShardForwarding(shard);
                var queue = await subscriber.SubscribeAsync(RedisKeys.FanOutShard(shard)).ConfigureAwait(false);
                queue.OnMessage(message =>
                {
                    var frame = (byte[]?)message.Message;

                    // Interest frames on these channels come from the Redis bus's fan-out sweep, which does not run here.
                    // Each routing instance forwards the shards it appends to (leases), so several forward no copies.
                    if (frame is { Length: > 0 } && frame[0] != (byte)'{' && Forwards(forwarding))
                    {
                        outbox.Post(frame);
                    }
                });
                queues.Add(queue);
            }

            LogForwarding(_logger, _redis.Options.Shards, _options.SequencedTopic);
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopping.
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            LogForwardFailed(_logger, e.Message);
        }
        finally
        {
            foreach (var queue in queues)
            {
                try
                {
                    await queue.UnsubscribeAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException)
                {
                    // Best effort while stopping.
                }
            }
        }
    }

    // A CloudEvent's data from one of the bus's topics. True: handled or not for this process (SUCCESS or DROP is the
    // caller's to say); the frames are handed to the role in their order.
    internal bool OnSequenced(ReadOnlyMemory<byte> data)
    {
        if (_fanOut is not { } fanOut || data.Length == 0 || data.Span[0] != BatchKind)
        {
            return false;
        }

        foreach (var frame in BusCodec.ReadBatch(data[1..]))
        {
            // A redelivered copy is not passed on: each would be published again to every interested node.
            var message = BusCodec.DecodeSequenced(frame);
            if (_fanOutSeen.IsFirst(message))
            {
                OnFanOutMessage(fanOut, message, frame.Length);
            }
        }

        return true;
    }

    // An interest change from the interest topic (the invocation failed), which every fan-out instance reads.
    internal bool OnInterest(ReadOnlyMemory<byte> data)
    {
        if (_fanOut is not { } fanOut || data.Length == 0 || data.Span[0] != InterestKind)
        {
            return false;
        }

        foreach (var frame in BusCodec.ReadBatch(data[1..]))
        {
            var version = BinaryPrimitives.ReadInt64BigEndian(frame.Span);
            var change = BusCodec.DecodeInterest(frame[8..]);
            if (change.Subscribers == NodeGone)
            {
                ForgetNode(fanOut, change.NodeId);
                continue;
            }

            ApplyInterest(fanOut, version, change, fromTopic: true);
            StoreInterest(version, change);
        }

        return true;
    }

    internal bool OnNode(string nodeId, ReadOnlyMemory<byte> data)
    {
        if (!_nodes.TryGetValue(nodeId, out var inbox) || data.Length == 0)
        {
            return false;
        }

        switch (data.Span[0])
        {
            case BatchKind:
                foreach (var frame in BusCodec.ReadBatch(data[1..]))
                {
                    inbox.Deliver(BusCodec.DecodeSequenced(frame));
                }

                return true;
            case ResyncKind:
                foreach (var frame in BusCodec.ReadBatch(data[1..]))
                {
                    var (app, channel) = DecodeResync(frame);
                    Observe(inbox.Node.OnResyncAsync((a, c) => a == app && c == channel));
                }

                return true;
            default:
                return false;
        }
    }

    // A topic's outbox for one partition key: frames of one key go in order, one message at a time.
    private DaprTopicOutbox Outbox(string topic, byte kind, string? partitionKey = null) =>
        _outboxes.GetOrAdd((topic, partitionKey, kind), static (key, self) => new DaprTopicOutbox(self._http, self._options, key.Topic, key.Key, key.Kind, self._logger, self._stopping.Token), this);

    // The sequenced topic's outbox of a routing shard: its key is the shard, so on a partitioned broker (Kafka) every
    // message of a channel goes to one partition, in order, while channels of other shards go in parallel.
    private DaprTopicOutbox SequencedOutbox(int shard) =>
        Outbox(_options.SequencedTopic, BatchKind, _shardKeys[shard]);

    private static byte[] EncodeInterest(InterestChange change, long version)
    {
        var json = BusCodec.EncodeInterest(change);
        var frame = new byte[8 + json.Length];
        BinaryPrimitives.WriteInt64BigEndian(frame, version);
        json.CopyTo(frame, 8);
        return frame;
    }

    private static byte[] EncodeResync(string app, string channel) => System.Text.Encoding.UTF8.GetBytes(app + "\0" + channel);

    private static (string App, string Channel) DecodeResync(ReadOnlyMemory<byte> frame)
    {
        var text = System.Text.Encoding.UTF8.GetString(frame.Span);
        var split = text.IndexOf('\0', StringComparison.Ordinal);
        return split < 0 ? throw new FormatException("a resync frame lacks its separator") : (text[..split], text[(split + 1)..]);
    }

    private static ErrorReply Unavailable(string message) => new(new RelayError(ErrorCodes.Unavailable, message));

    // Handlers complete synchronously in practice; one that does not is observed, never awaited on the request.
    private void Observe(ValueTask pending)
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

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        // Registered as itself and as IRelayBus: the container disposes it twice.
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        foreach (var outbox in _outboxes.Values)
        {
            outbox.Complete();
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        _http.Dispose();
        _stopping.Dispose();
    }

    private sealed class PendingRequest(byte[] frame)
    {
        public byte[] Frame { get; } = frame;

        public TaskCompletionSource<RoutingReply> Reply { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    // One lane of requests to routing: posted in order, sent in order, one invocation at a time.
    private sealed class RoutingLane
    {
        private readonly Channel<PendingRequest> _queue = Channel.CreateUnbounded<PendingRequest>(new UnboundedChannelOptions { SingleReader = true });
        private readonly DaprBus _bus;

        public RoutingLane(DaprBus bus)
        {
            _bus = bus;
            _ = Task.Run(SendLoopAsync);
        }

        public void Post(PendingRequest request)
        {
            if (!_queue.Writer.TryWrite(request))
            {
                request.Reply.TrySetResult(Unavailable("the Dapr bus is stopping; try again"));
            }
        }

        private async Task SendLoopAsync()
        {
            var batch = new ArrayBufferWriter<byte>(16 * 1024);
            var sending = new List<PendingRequest>();
            var reader = _queue.Reader;
            try
            {
                while (await reader.WaitToReadAsync(_bus._stopping.Token).ConfigureAwait(false))
                {
                    batch.ResetWrittenCount();
                    sending.Clear();
                    while (sending.Count < MaxRequestsPerInvocation && batch.WrittenCount < _bus._options.MaxBatchBytes && reader.TryRead(out var request))
                    {
                        if (!request.Reply.Task.IsCompleted)
                        {
                            BusCodec.AppendToBatch(batch, request.Frame);
                            sending.Add(request);
                        }
                    }

                    if (sending.Count == 0)
                    {
                        continue;
                    }

                    var (replies, error) = await _bus.InvokeRoutingAsync(batch.WrittenMemory, sending.Count).ConfigureAwait(false);
                    for (var i = 0; i < sending.Count; i++)
                    {
                        sending[i].Reply.TrySetResult(replies?[i] ?? Unavailable(error!));
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                // The bus is stopping.
            }
        }
    }

    private sealed class Registration(Action dispose) : IDisposable
    {
        private Action? _dispose = dispose;

        public void Dispose() => Interlocked.Exchange(ref _dispose, null)?.Invoke();
    }
}
