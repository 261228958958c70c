using System.Diagnostics.Metrics;
using System.Collections.Concurrent;
using System.IO.Hashing;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// The bus between processes, over Redis through the process's one StackExchange.Redis multiplexer
/// (<see cref="RedisConnector"/>). Each hop is a file of its own: requests to routing and shard leases
/// (<c>RedisBus.Requests.cs</c>), sequenced messages to fan-out (<c>RedisBus.FanOut.cs</c>), fan-out's batches to nodes
/// (<c>RedisBus.Outboxes.cs</c>, <see cref="NodeOutbox"/>), nodes' heartbeats and deliveries (<c>RedisBus.Nodes.cs</c>) and
/// node interest (<c>RedisBus.Interest.cs</c>). Shard ownership is a lease per shard, node liveness a heartbeat, node
/// interest a hash per node; all three expire when their process dies.
/// </summary>
/// <remarks>
/// Key and channel names come from <see cref="RedisKeys"/>. Pub/sub is at most once: the Lua scripts make appends atomic,
/// and what a lost hop drops is recovered from history by the client.
/// </remarks>
public sealed partial class RedisBus : IRelayBus, IAsyncDisposable
{
    /// <summary>Prefix of every bus pub/sub channel (<see cref="RedisKeys.ChannelNamePrefix"/>).</summary>
    public const string Prefix = RedisKeys.ChannelNamePrefix;

    private readonly RedisBusOptions _options;
    private readonly RedisConnector _connector;
    private readonly TimeProvider _time;
    private readonly ILogger<RedisBus> _logger;
    private readonly Lazy<Task> _ready;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<RedisChannel, ChannelMessageQueue> _subscriptions = new();
    private readonly ConcurrentDictionary<RedisChannel, Action<ReadOnlyMemory<byte>>> _handlers = new();
    private readonly SemaphoreSlim _subscribing = new(1, 1);
    private IConnectionMultiplexer? _multiplexer;

    // Under Sentinel, the bus's own connection to the sentinels (RedisBus.Sentinel.cs), made on first use.
    private ConnectionMultiplexer? _sentinels;
    private IDatabase? _database;
    private RedisPresence? _presence;
    private bool _isCluster;
    private int _disposed;
    private int _watchingSubscriptions;
    private readonly RedisBusMetrics _metrics;

    /// <summary>Creates the bus; it connects on first use (or when the startup check awaits <see cref="ReadyAsync"/>).</summary>
    public RedisBus(IOptions<RedisBusOptions> options, RedisConnector connector, ILogger<RedisBus> logger, TimeProvider? time = null, IMeterFactory? meters = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(connector);
        _options = options.Value;
        _connector = connector;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        InstanceId = $"{Environment.MachineName}-{Environment.ProcessId}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
        _replyChannel = RedisKeys.Reply(InstanceId);
        _replyChannelName = RedisKeys.ReplyName(InstanceId);
        _leaseKeys = RedisKeys.Leases(_options.Shards);
        _fanOutLeaseKeys = RedisKeys.FanOutLeases(_options.Shards);
        _fanOutChannelNames = new string[_options.Shards];
        _fanOutChannels = new RedisChannel[_options.Shards];
        for (var shard = 0; shard < _options.Shards; shard++)
        {
            _fanOutChannelNames[shard] = RedisKeys.FanOutShardName(shard);
            _fanOutChannels[shard] = RedisKeys.FanOutShard(shard);
        }

        _fanOutShards = [.. Enumerable.Range(0, _options.Shards).Select(static _ => new FanOutShard())];
        _ready = new Lazy<Task>(ConnectAsync, LazyThreadSafetyMode.ExecutionAndPublication);
        _metrics = new RedisBusMetrics(meters, () => _ownedShards.Count, () => Volatile.Read(ref _fanOutShardsHeld), () => FencedDeliveries);
    }

    /// <summary>The bus's settings (<c>Relay:Redis</c>).</summary>
    public RedisBusOptions Options => _options;

    /// <summary>This process's id on the bus (lease owner, reply channel).</summary>
    public string InstanceId { get; }

    /// <inheritdoc />
    public bool MayLoseDeliveries => true;

    /// <summary>The database every bus command goes to (after <see cref="ReadyAsync"/>).</summary>
    public IDatabase Database => _database ?? throw new InvalidOperationException("the Redis bus is not connected yet");

    /// <summary>Presence in Redis (after <see cref="ReadyAsync"/>).</summary>
    public RedisPresence Presence => _presence ?? throw new InvalidOperationException("the Redis bus is not connected yet");

    // Under Sentinel, the multiplexer pinned to the master (RedisBus.Sentinel.cs); otherwise the connector's.
    private ISubscriber Subscriber => (_pinned ?? _multiplexer!).GetSubscriber();

    /// <summary>Connects (once) and subscribes to this process's reply channel.</summary>
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

    /// <summary>The fan-out channel of a channel's shard: where its sequenced messages and presence events are published.</summary>
    public string FanOutChannelFor(string app, string channel) => _fanOutChannelNames[ShardOf(app, channel)];

    /// <summary>
    /// The fencing token this process's writes to a channel carry: the one its lease on the channel's shard was taken
    /// with (<see cref="RedisKeys.Fences"/>), or null when it holds no lease on that shard. While a routing handler of this
    /// process starts on a publish or presence change (before its first await), the fence that request was admitted under.
    /// </summary>
    public string? FenceFor(string app, string channel)
    {
        var shard = ShardOf(app, channel);
        return TryAdmittedFence(shard, out var admitted) ? admitted : _fences.TryGetValue(shard, out var token) ? token : null;
    }

    /// <summary>Whether this process holds the routing lease on <paramref name="shard"/> (it appends that shard's messages).</summary>
    public bool HoldsRoutingShard(int shard) => _fences.ContainsKey(shard);

    private async Task ConnectAsync()
    {
        var multiplexer = await _connector.ConnectAsync().ConfigureAwait(false);
        _multiplexer = multiplexer;
        _isCluster = RedisConnector.IsCluster(multiplexer);
        _database = multiplexer.GetDatabase();
        _presence = new RedisPresence(_database);
        if (UsesSentinel)
        {
            await PinSubscriptionsAsync().ConfigureAwait(false);
        }
        else
        {
            multiplexer.ConnectionFailed += OnConnectionFailed;
            multiplexer.ConnectionRestored += OnConnectionRestored;
        }

        await SubscribeAsync(_replyChannel, OnReply).ConfigureAwait(false);

        LogConnected(_logger, _options.Describe(), InstanceId);
    }

    // The subscription connection went away: replies and deliveries published meanwhile are lost to this process.
    private void OnConnectionFailed(object? sender, ConnectionFailedEventArgs e)
    {
        if (e.ConnectionType == ConnectionType.Subscription)
        {
            OnSubscriptionLost();
            _ = OnSubscriptionRestoredAsync();
        }
    }

    private void OnConnectionRestored(object? sender, ConnectionFailedEventArgs e)
    {
        if (e.ConnectionType == ConnectionType.Subscription)
        {
            _ = OnSubscriptionRestoredAsync();
        }
    }

    // StackExchange.Redis subscribes again on a restored connection, or on another server after a failover (where no
    // restore of the old one may ever come): watch until the reply channel is connected again and a probe published on
    // it comes back through it (the re-subscription is in effect, not just the connection: a PING could overtake the
    // SUBSCRIBE, and a refused SUBSCRIBE still leaves the connection up), then say the subscriptions are back. One
    // watcher at a time; the stopping token ends it.
    private async Task OnSubscriptionRestoredAsync()
    {
        if (Interlocked.Exchange(ref _watchingSubscriptions, 1) == 1)
        {
            return;
        }

        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                try
                {
                    if (Subscriber.IsConnected(_replyChannel) && await ReplyChannelHearsAsync().ConfigureAwait(false))
                    {
                        OnSubscriptionBack();
                        return;
                    }
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    LogSubscribeLater(_logger, "(all)", e.Message);
                }

                await Task.Delay(100, _stopping.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // Stopping.
        }
        finally
        {
            Volatile.Write(ref _watchingSubscriptions, 0);
        }
    }

    // Every subscription's messages are handled in order (one queue per channel), one at a time. Subscribing,
    // unsubscribing and moving a subscription to the master (Sentinel) take turns.
    private async Task SubscribeAsync(RedisChannel channel, Action<ReadOnlyMemory<byte>> handler)
    {
        await _subscribing.WaitAsync().ConfigureAwait(false);
        try
        {
            await SubscribeNowAsync(channel, handler).ConfigureAwait(false);
        }
        finally
        {
            _subscribing.Release();
        }
    }

    private async Task SubscribeNowAsync(RedisChannel channel, Action<ReadOnlyMemory<byte>> handler)
    {
        var queue = await Subscriber.SubscribeAsync(channel).ConfigureAwait(false);
        queue.OnMessage(message =>
        {
            try
            {
                handler((ReadOnlyMemory<byte>)message.Message);
            }
            catch (Exception e)
            {
                LogBadFrame(_logger, message.Channel.ToString(), e);
            }
        });
        if (_subscriptions.TryGetValue(channel, out var previous) && !ReferenceEquals(previous, queue))
        {
            await IgnoreFailure(previous.UnsubscribeAsync()).ConfigureAwait(false);
        }

        _subscriptions[channel] = queue;
        _handlers[channel] = handler;
    }

    private async Task UnsubscribeAsync(RedisChannel channel)
    {
        await _subscribing.WaitAsync().ConfigureAwait(false);
        try
        {
            _handlers.TryRemove(channel, out _);
            if (_subscriptions.TryRemove(channel, out var queue))
            {
                await queue.UnsubscribeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _subscribing.Release();
        }
    }

    // A subscription not confirmed in time is made again on the next reconnect (the client keeps it): carry on meanwhile.
    private async Task SubscribeOrLaterAsync(RedisChannel channel, Action<ReadOnlyMemory<byte>> handler)
    {
        try
        {
            await SubscribeAsync(channel, handler).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            LogSubscribeLater(_logger, channel.ToString(), e.Message);
        }
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
        Volatile.Read(ref _overdueSweep)?.Dispose();
        Volatile.Read(ref _shareTimer)?.Dispose();
        foreach (var outbox in _outboxes.Values)
        {
            outbox.Complete();
        }

        if (_multiplexer is not null)
        {
            _multiplexer.ConnectionFailed -= OnConnectionFailed;
            _multiplexer.ConnectionRestored -= OnConnectionRestored;
            foreach (var channel in _subscriptions.Keys)
            {
                await IgnoreFailure(UnsubscribeAsync(channel)).ConfigureAwait(false);
            }
        }

        // The connector's multiplexer belongs to RedisConnector (the container disposes it); the pinned one is ours.
        await UnpinAsync().ConfigureAwait(false);
        if (_sentinels is not null)
        {
            await _sentinels.DisposeAsync().ConfigureAwait(false);
        }

        _stopping.Dispose();
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
}
