using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus.Connections;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// Apps' connections counted across the nodes in Redis (<c>AddRedis()</c> registers it, so the Dapr bus has it too). Per
/// app, under <see cref="RedisKeys.ConnectionsPrefix"/>: a hash <c>counts</c> (this process's id → its connections of the
/// app, <c>HINCRBY</c> on open and close) and a hash <c>beats</c> (process → its last heartbeat, Redis clock). Opening is
/// one script: it drops the processes whose heartbeat is older than <see cref="RedisBusOptions.NodeTtl"/> (a crashed node),
/// sums the rest, and counts the connection in only below the limit, so two nodes racing for the last place admit one.
/// Each process beats every third of the TTL for the apps it counted, and writes its whole count again where Redis lost
/// it (a restart, a sweep while it could not beat) or a change did not reach Redis.
/// </summary>
internal sealed partial class RedisConnectionCounts : IConnectionCounts, IAsyncDisposable
{
    // KEYS: counts, beats. ARGV: process, max, stale after (ms), this process's count before the call, key ttl (ms).
    // Returns the app's count across the processes after the call, or -1 at the limit (nothing counted).
    private static readonly RedisLuaScript Open = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local stale = now - tonumber(ARGV[3])
        local beats = redis.call('HGETALL', KEYS[2])
        for i = 1, #beats, 2 do
          if beats[i] ~= ARGV[1] and tonumber(beats[i + 1]) < stale then
            redis.call('HDEL', KEYS[1], beats[i])
            redis.call('HDEL', KEYS[2], beats[i])
          end
        end
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
          redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
        end
        redis.call('HSET', KEYS[2], ARGV[1], now)
        redis.call('PEXPIRE', KEYS[1], ARGV[5])
        redis.call('PEXPIRE', KEYS[2], ARGV[5])
        local total = 0
        for _, count in ipairs(redis.call('HVALS', KEYS[1])) do
          total = total + tonumber(count)
        end
        if total >= tonumber(ARGV[2]) then return -1 end
        redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
        return total + 1
        """);

    // KEYS: counts. ARGV: process. One connection out, never below 0 (a count Redis lost is written whole by the beat).
    private static readonly RedisLuaScript Close = new("""
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
        local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
        if left < 0 then redis.call('HSET', KEYS[1], ARGV[1], 0) end
        return left
        """);

    // KEYS: counts, beats. ARGV: process, its count, '1' to write the count whole, key ttl (ms). The count is written
    // whole also when Redis no longer has this process's beat (it restarted, or swept this process as dead).
    private static readonly RedisLuaScript Beat = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        if ARGV[3] == '1' or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
          redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        end
        redis.call('HSET', KEYS[2], ARGV[1], now)
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        redis.call('PEXPIRE', KEYS[2], ARGV[4])
        return 1
        """);

    private readonly RedisConnector _connector;
    private readonly TimeProvider _time;
    private readonly ILogger<RedisConnectionCounts> _logger;
    private readonly ConcurrentDictionary<string, AppCount> _apps = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private readonly string _process = $"{Environment.MachineName}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
    private readonly long _staleMs;
    private readonly long _keyTtlMs;
    private readonly TimeSpan _beatEvery;
    private readonly TimeSpan _openTimeout;
    private Task? _beating;
    private int _down;

    public RedisConnectionCounts(RedisConnector connector, IOptions<RedisBusOptions> options, TimeProvider time, ILogger<RedisConnectionCounts> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _connector = connector;
        _time = time;
        _logger = logger;
        var ttl = options.Value.NodeTtl;
        _staleMs = (long)ttl.TotalMilliseconds;

        // Keys of an app nobody counts any more go once every process has been silent a while.
        _keyTtlMs = Math.Max(_staleMs * 4, 60_000);
        _beatEvery = ttl / 3;
        _openTimeout = options.Value.CommandTimeout;
    }

    /// <inheritdoc />
    public string Scope => $"in Redis across every node (a node silent for {_staleMs} ms, Relay:Redis:NodeTtl, stops counting)";

    /// <inheritdoc />
    public async ValueTask<ConnectionCount> TryAddAsync(string app, int max, bool admitWhenUnavailable, CancellationToken cancellationToken)
    {
        var count = _apps.GetOrAdd(app, static _ => new AppCount());
        StartBeating();
        var prefix = RedisKeys.ConnectionsPrefix(app);
        try
        {
            var database = (await _connector.ConnectAsync().WaitAsync(_openTimeout, cancellationToken).ConfigureAwait(false)).GetDatabase();
            var total = (long)await Open.EvaluateAsync(
                database,
                [prefix + "counts", prefix + "beats"],
                [_process, max, _staleMs, Volatile.Read(ref count.Local), _keyTtlMs]).WaitAsync(_openTimeout, cancellationToken).ConfigureAwait(false);
            Up();
            if (total < 0)
            {
                return ConnectionCount.Full;
            }

            Interlocked.Increment(ref count.Local);
            return ConnectionCount.Counted;
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            // Whether the script ran is unknown: the next beat writes this process's count whole.
            Volatile.Write(ref count.Stale, 1);
            Down(app, e.Message);
            if (admitWhenUnavailable)
            {
                Interlocked.Increment(ref count.Local);
            }

            return ConnectionCount.Unavailable;
        }
        catch (OperationCanceledException)
        {
            // The opener went away; the script may have run all the same.
            Volatile.Write(ref count.Stale, 1);
            throw;
        }
    }

    /// <inheritdoc />
    public void Remove(string app)
    {
        if (!_apps.TryGetValue(app, out var count))
        {
            return;
        }

        Interlocked.Decrement(ref count.Local);
        _ = RemoveAsync(app, count);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_beating is not null)
        {
            await _beating.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);

            // A process that stops (its connections closed) leaves at once, rather than a TTL later; best effort, bounded.
            if (_connector.ConnectAsync() is { IsCompletedSuccessfully: true } connected)
            {
                var database = connected.Result.GetDatabase();
                var leaves = new List<Task>(_apps.Count * 2);
                foreach (var app in _apps.Keys)
                {
                    var prefix = RedisKeys.ConnectionsPrefix(app);
                    leaves.Add(database.HashDeleteAsync(prefix + "counts", _process));
                    leaves.Add(database.HashDeleteAsync(prefix + "beats", _process));
                }

                await Task.WhenAll(leaves).WaitAsync(_openTimeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        _stopping.Dispose();
    }

    private async Task RemoveAsync(string app, AppCount count)
    {
        try
        {
            var database = (await _connector.ConnectAsync().ConfigureAwait(false)).GetDatabase();
            await Close.EvaluateAsync(database, [RedisKeys.ConnectionsPrefix(app) + "counts"], [_process]).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException)
        {
            Volatile.Write(ref count.Stale, 1);
        }
    }

    private void StartBeating()
    {
        if (Volatile.Read(ref _beating) is null)
        {
            var loop = new Task<Task>(BeatAsync);
            if (Interlocked.CompareExchange(ref _beating, loop.Unwrap(), null) is null)
            {
                loop.Start(TaskScheduler.Default);
            }
        }
    }

    // Every third of the TTL, one pipelined script per app this process counted: its beat, and its whole count where needed.
    private async Task BeatAsync()
    {
        var stopping = _stopping.Token;
        try
        {
            while (!stopping.IsCancellationRequested)
            {
                await Task.Delay(_beatEvery, _time, stopping).ConfigureAwait(false);
                IDatabase database;
                try
                {
                    database = (await _connector.ConnectAsync().WaitAsync(stopping).ConfigureAwait(false)).GetDatabase();
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    continue;
                }

                var beats = new List<Task>(_apps.Count);
                foreach (var (app, count) in _apps)
                {
                    beats.Add(BeatAsync(database, app, count));
                }

                await Task.WhenAll(beats).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Stopping: the other nodes drop this process's counts once its beat is older than the TTL.
        }
    }

    private async Task BeatAsync(IDatabase database, string app, AppCount count)
    {
        var whole = Interlocked.Exchange(ref count.Stale, 0);
        var prefix = RedisKeys.ConnectionsPrefix(app);
        try
        {
            await Beat.EvaluateAsync(
                database,
                [prefix + "counts", prefix + "beats"],
                [_process, Math.Max(0, Volatile.Read(ref count.Local)), whole == 1 ? "1" : "0", _keyTtlMs]).ConfigureAwait(false);
            Up();
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            Volatile.Write(ref count.Stale, 1);
            Down(app, e.Message);
        }
    }

    private void Down(string app, string reason)
    {
        if (Interlocked.Exchange(ref _down, 1) == 0)
        {
            LogUnavailable(_logger, app, reason);
        }
    }

    private void Up()
    {
        if (Volatile.Read(ref _down) == 1 && Interlocked.Exchange(ref _down, 0) == 1)
        {
            LogAvailable(_logger);
        }
    }

    [LoggerMessage(EventId = 2060, Level = LogLevel.Warning, Message = "Connection counts across nodes unreachable in Redis (app {App}): {Reason}. Opens of apps with MaxClusterConnections follow Relay:Ingress:AppLimits:ClusterCountsDown until Redis answers again")]
    private static partial void LogUnavailable(ILogger logger, string app, string reason);

    [LoggerMessage(EventId = 2061, Level = LogLevel.Information, Message = "Connection counts across nodes reachable in Redis again")]
    private static partial void LogAvailable(ILogger logger);

    private sealed class AppCount
    {
        // This process's connections of the app (counted in, or admitted while Redis was unreachable).
        public int Local;

        // 1 when Redis may not hold Local: the next beat writes it whole.
        public int Stale;
    }
}
