using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus.Sessions;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// The last wills across nodes in Redis (<c>AddRedis()</c> registers it), under <see cref="RedisKeys.WillsPrefix"/>: one
/// hash per client id (<see cref="RedisKeys.Will"/>: the node that holds its connection, the connection's token, the
/// will's bytes, its delay), a set per node of its entries, a hash of the nodes' beats, and a sorted set of delayed wills
/// by when they are due. Each node beats every third of <see cref="RedisBusOptions.NodeTtl"/>, and the same script takes
/// every will of a node whose beat is older than the TTL (a dead one): each entry is marked taken as it is, so it goes to
/// one node, once. A delayed will not due yet becomes the sweeping node's until it is (a later connection of its client
/// id replaces it meanwhile: cancelled). A node presumed dead that comes back finds its entries taken
/// (<see cref="WillRelease.Gone"/>) and publishes none of them again; an entry Redis lost (a restart without persistence)
/// is its node's to publish. Live entries carry no time to live: each goes when its connection ends, or with its node's
/// death; an empty entry (a connection without a will, kept so its client's earlier connection knows it was replaced) and
/// a taken one expire after <see cref="EmptyKept"/>.
/// </summary>
internal sealed partial class RedisWillStore : IWillStore, IAsyncDisposable
{
    /// <summary>How long an empty or taken entry outlives its write: longer than a taken-over or paused connection takes to end.</summary>
    private static readonly TimeSpan EmptyKept = TimeSpan.FromHours(1);

    // KEYS: the entry, beats, this node's set, due. ARGV: node, token, will ('' none), empty entry's ttl (ms), node sets'
    // prefix, delay (ms). Replaces the client id's entry, whichever node wrote it (its set and due forget it).
    private static readonly RedisLuaScript Register = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local old = redis.call('HGET', KEYS[1], 'node')
        if old and old ~= '' then redis.call('SREM', ARGV[5] .. old, KEYS[1]) end
        redis.call('ZREM', KEYS[4], KEYS[1])
        redis.call('DEL', KEYS[1])
        if ARGV[3] == '' then
          redis.call('HSET', KEYS[1], 'node', '', 'token', ARGV[2])
          redis.call('PEXPIRE', KEYS[1], ARGV[4])
          return 1
        end
        redis.call('HSET', KEYS[1], 'node', ARGV[1], 'token', ARGV[2], 'will', ARGV[3], 'delay', ARGV[6])
        redis.call('SADD', KEYS[3], KEYS[1])
        redis.call('HSET', KEYS[2], ARGV[1], now)
        return 1
        """);

    // KEYS: the entry, this node's set, due. ARGV: token. 0 gone (taken by a sweep), 1 removed (or none: Redis lost it,
    // so its node publishes it), 2 replaced by a later connection.
    private static readonly RedisLuaScript Release = new("""
        local entry = redis.call('HMGET', KEYS[1], 'token', 'taken')
        if not entry[1] then return 1 end
        if entry[1] ~= ARGV[1] then return 2 end
        if entry[2] then return 0 end
        redis.call('DEL', KEYS[1])
        redis.call('SREM', KEYS[2], KEYS[1])
        redis.call('ZREM', KEYS[3], KEYS[1])
        return 1
        """);

    // KEYS: beats, due. ARGV: node, stale after (ms), node sets' prefix, taken entry's ttl (ms). Beats for this node,
    // then takes the wills of every node whose beat is older and forgets those nodes. A delayed will not due yet (its
    // delay counted from the dead node's last beat) becomes this node's, in due; those due now are taken too. A taken
    // entry is left as 'taken' (its token only, for a while): its node, if only silent, tells it from one Redis lost.
    // Returns the wills taken.
    private static readonly RedisLuaScript Sweep = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('HSET', KEYS[1], ARGV[1], now)
        local mine = ARGV[3] .. ARGV[1]
        local stale = now - tonumber(ARGV[2])
        local taken = {}
        local function take(key, will, token)
          taken[#taken + 1] = will
          redis.call('DEL', key)
          redis.call('HSET', key, 'node', '', 'token', token, 'taken', '1')
          redis.call('PEXPIRE', key, ARGV[4])
          redis.call('ZREM', KEYS[2], key)
        end
        local beats = redis.call('HGETALL', KEYS[1])
        for i = 1, #beats, 2 do
          local beat = tonumber(beats[i + 1])
          if beats[i] ~= ARGV[1] and beat < stale then
            local set = ARGV[3] .. beats[i]
            for _, key in ipairs(redis.call('SMEMBERS', set)) do
              local entry = redis.call('HMGET', key, 'node', 'will', 'delay', 'due', 'token')
              if entry[1] == beats[i] and entry[2] then
                local due = tonumber(entry[4] or 0)
                if due == 0 then due = beat + tonumber(entry[3] or 0) end
                if due <= now then
                  take(key, entry[2], entry[5])
                else
                  redis.call('HSET', key, 'node', ARGV[1], 'due', due)
                  redis.call('SADD', mine, key)
                  redis.call('ZADD', KEYS[2], due, key)
                end
              end
            end
            redis.call('DEL', set)
            redis.call('HDEL', KEYS[1], beats[i])
          end
        end
        for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
          local entry = redis.call('HMGET', key, 'node', 'will', 'due', 'token')
          if entry[1] == ARGV[1] and entry[2] and tonumber(entry[3] or 0) <= now then
            take(key, entry[2], entry[4])
            redis.call('SREM', mine, key)
          elseif entry[1] ~= ARGV[1] then
            redis.call('ZREM', KEYS[2], key)
          end
        end
        return taken
        """);

    private readonly RedisConnector _connector;
    private readonly TimeProvider _time;
    private readonly ILogger<RedisWillStore> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly string _node = $"{Environment.MachineName}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
    private readonly long _staleMs;
    private readonly TimeSpan _beatEvery;
    private long _tokens;
    private Task? _sweeping;
    private int _down;

    public RedisWillStore(RedisConnector connector, IOptions<RedisBusOptions> options, TimeProvider time, ILogger<RedisWillStore> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _connector = connector;
        _time = time;
        _logger = logger;
        _staleMs = (long)options.Value.NodeTtl.TotalMilliseconds;
        _beatEvery = options.Value.NodeTtl / 3;
    }

    /// <inheritdoc />
    public bool Durable => true;

    /// <inheritdoc />
    public async ValueTask<string> RegisterAsync(string scope, string app, string clientId, ReadOnlyMemory<byte> will, TimeSpan delay, CancellationToken cancellationToken)
    {
        var token = $"{_node}:{Interlocked.Increment(ref _tokens)}";
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        await Register.EvaluateAsync(
            database,
            [RedisKeys.Will(scope, app, clientId), Beats, NodeSet(_node), Due],
            [_node, token, will, (long)EmptyKept.TotalMilliseconds, NodeSetPrefix, (long)delay.TotalMilliseconds]).ConfigureAwait(false);
        return token;
    }

    /// <inheritdoc />
    public async ValueTask<WillRelease> ReleaseAsync(string scope, string app, string clientId, string token, CancellationToken cancellationToken)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await Release.EvaluateAsync(database, [RedisKeys.Will(scope, app, clientId), NodeSet(_node), Due], [token]).ConfigureAwait(false) switch
        {
            0 => WillRelease.Gone,
            1 => WillRelease.Removed,
            _ => WillRelease.Replaced,
        };
    }

    /// <inheritdoc />
    public IDisposable WatchOrphans(Func<ReadOnlyMemory<byte>, Task> publish)
    {
        ArgumentNullException.ThrowIfNull(publish);
        var loop = new Task<Task>(() => SweepAsync(publish));
        if (Interlocked.CompareExchange(ref _sweeping, loop.Unwrap(), null) is not null)
        {
            throw new InvalidOperationException("The will store already has its watcher: one per process.");
        }

        loop.Start(TaskScheduler.Default);
        return new Stopper(this);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_sweeping is { } sweeping)
        {
            await sweeping.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        _stopping.Dispose();
    }

    private const string NodeSetPrefix = RedisKeys.WillsPrefix + "n:";
    private static readonly RedisKey Beats = RedisKeys.WillsPrefix + "beats";
    private static readonly RedisKey Due = RedisKeys.WillsPrefix + "due";

    private static RedisKey NodeSet(string node) => NodeSetPrefix + node;

    // Every third of the TTL: this node's beat, and the wills of the nodes that stopped beating, published here. A node
    // that stops leaves its beat: the others take what its connections left (nothing, when they ended cleanly) a TTL later.
    private async Task SweepAsync(Func<ReadOnlyMemory<byte>, Task> publish)
    {
        var stopping = _stopping.Token;
        try
        {
            while (!stopping.IsCancellationRequested)
            {
                RedisResult[] taken;
                try
                {
                    var database = await DatabaseAsync(stopping).ConfigureAwait(false);
                    taken = (RedisResult[])(await Sweep.EvaluateAsync(database, [Beats, Due], [_node, _staleMs, NodeSetPrefix, (long)EmptyKept.TotalMilliseconds]).ConfigureAwait(false))!;
                    Volatile.Write(ref _down, 0);
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    if (Interlocked.Exchange(ref _down, 1) == 0)
                    {
                        LogSweepFailed(_logger, e.Message);
                    }

                    taken = [];
                }

                if (taken.Length > 0)
                {
                    LogTaken(_logger, taken.Length);
                }

                // Not awaited: publishing many wills must not hold up this node's next beat.
                foreach (var will in taken)
                {
                    _ = publish((byte[])will!);
                }

                await Task.Delay(_beatEvery, _time, stopping).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    private async Task<IDatabase> DatabaseAsync(CancellationToken cancellationToken) =>
        (await _connector.ConnectAsync().WaitAsync(cancellationToken).ConfigureAwait(false)).GetDatabase();

    [LoggerMessage(EventId = 2070, Level = LogLevel.Warning, Message = "Last wills: {Count} taken from nodes that stopped beating (silent longer than Relay:Redis:NodeTtl); publishing them here")]
    private static partial void LogTaken(ILogger logger, int count);

    [LoggerMessage(EventId = 2071, Level = LogLevel.Warning, Message = "Last wills: this node's beat and sweep failed in Redis ({Reason}); tried again every third of Relay:Redis:NodeTtl (logged once until it works). Past the TTL the other nodes publish this node's wills")]
    private static partial void LogSweepFailed(ILogger logger, string reason);

    private sealed class Stopper(RedisWillStore store) : IDisposable
    {
        public void Dispose()
        {
            try
            {
                store._stopping.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The store stopped first.
            }
        }
    }
}
