using System.Globalization;
using System.Security.Cryptography;
using Relay.Bus.Routing;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// A routing shard's per-channel state kept in Redis: the epoch, the last seq, a bounded history and the idempotency
/// window. Every operation is one Lua script (one round trip, atomic on the server), so any number of callers on any
/// number of connections see gapless seqs.
/// </summary>
/// <remarks>
/// <para>Keys of a channel (the hash tag keeps them on one cluster slot; the length prefix makes app/channel unambiguous):</para>
/// <list type="bullet">
/// <item><c>relay:{&lt;len(app)&gt;:&lt;app&gt;:&lt;channel&gt;}:pos</c>: hash with <c>epoch</c> and <c>seq</c>. One key, so the epoch
/// and the seq are lost together or not at all.</item>
/// <item><c>relay:{…}:log</c>: sorted set, score = seq, member = <c>seq:timestampMs:expiresAtMs:payload</c>.</item>
/// <item><c>relay:{…}:id:&lt;id&gt;</c>: string <c>epoch:seq</c> with a PX expiry of the dedupe window.</item>
/// </list>
/// <para>When <c>pos</c> is missing (never used, expired, evicted, FLUSHALL) the next operation creates a new random epoch
/// at seq 0 and drops any leftover <c>log</c>; id records of another epoch are ignored. An epoch is never reused after data loss.</para>
/// <para>History is trimmed to <c>maxHistory</c> on append and by age (from the oldest end) on every append and read.</para>
/// </remarks>
public sealed class RedisChannelLog
{
    // Shared Lua helpers: the server clock (ms) and the age trim from the oldest end of the log.
    private const string Prelude = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local function trim_expired(log)
          while true do
            local first = redis.call('ZRANGE', log, 0, 0)
            if #first == 0 then return end
            local _, _, expires = string.find(first[1], '^%d+:%d+:(%d+):')
            if expires and tonumber(expires) > now then return end
            redis.call('ZREMRANGEBYRANK', log, 0, 0)
          end
        end
        local function ensure_epoch(pos, log, fresh)
          local epoch = redis.call('HGET', pos, 'epoch')
          if epoch then return epoch, tonumber(redis.call('HGET', pos, 'seq') or '0') end
          redis.call('DEL', pos, log)
          redis.call('HSET', pos, 'epoch', fresh, 'seq', 0)
          return fresh, 0
        end
        local function fence_out(pos, token)
          if token == '' then return false end
          local held = redis.call('HGET', pos, 'fence')
          return held ~= false and tonumber(held) > tonumber(token)
        end
        local function fence_keep(pos, token)
          if token ~= '' and redis.call('HGET', pos, 'fence') ~= token then redis.call('HSET', pos, 'fence', token) end
        end
        local function keep_until(key, ms)
          local ttl = redis.call('PTTL', key)
          if ttl >= 0 and ttl < ms or ttl == -1 then redis.call('PEXPIRE', key, ms) end
        end

        """;

    // KEYS: pos, log[, id][, origin]. ARGV: fresh epoch, payload, maxHistory, historyTtlMs, dedupeMs, keyExpiryMs,
    // publish channel ('' = none), fencing token ('' = unfenced). Reply {seq, epoch, duplicate} or {-1} when fenced out:
    // pos keeps the highest token that wrote, and a lower one (a shard's former owner) is refused. Nothing outside the
    // channel's slot is read, so it runs in Redis Cluster.
    //
    // With an origin (ARGV 9-12: sender, its number, the item's index in the request, the sender's floor; '' = none), pos
    // keeps the sender's last stored number as field o:<sender> = number:item:seq:ms, and the last key (o:<sender>, a
    // sorted set by number, member number:item:seq:epoch) what each of its numbers from its floor up stored. A number and
    // item at or before the mark was stored before: nothing is appended, and it is a duplicate with the seq it stored, so
    // a resend whose first answer was lost (the owner died after storing, the answer went out while nobody listened) is
    // answered again; {-2} (handled before, no answer) only when its record is gone (below the sender's floor, or older
    // than ten minutes: nobody waits for it). A sender's attempt is stored at most once, even when a copy it gave up on
    // reaches a later owner after the first was stored. Marks older than ten minutes go when a new sender arrives.
    private static readonly RedisLuaScript s_append = new(Prelude + """
        local fenced = fence_out(KEYS[1], ARGV[8])
        if fenced then return {-1, '', 0} end
        local epoch, seq = ensure_epoch(KEYS[1], KEYS[2], ARGV[1])
        fence_keep(KEYS[1], ARGV[8])
        local origin = ARGV[9] and ARGV[9] ~= '' and ('o:' .. ARGV[9]) or nil
        local number, item = tonumber(ARGV[10] or '0'), tonumber(ARGV[11] or '0')
        local stored = origin and KEYS[#KEYS]
        local idkey = #KEYS > (origin and 3 or 2) and KEYS[3] or nil
        if origin then
          local mark = redis.call('HGET', KEYS[1], origin)
          if mark then
            local _, _, mn, mi, ms = string.find(mark, '^(%d+):(%d+):(%d+):')
            mn, mi = tonumber(mn), tonumber(mi)
            if number == mn and item == mi then return {tonumber(ms), epoch, 1} end
            if number < mn or (number == mn and item < mi) then
              for _, record in ipairs(redis.call('ZRANGEBYSCORE', stored, number, number)) do
                local _, _, ri, rs, re = string.find(record, '^%d+:(%d+):(%d+):(.*)$')
                if tonumber(ri) == item and re == epoch then return {tonumber(rs), epoch, 1} end
              end
              return {-2, epoch, 0}
            end
          elseif redis.call('HLEN', KEYS[1]) > 32 then
            local fields = redis.call('HGETALL', KEYS[1])
            for i = 1, #fields, 2 do
              if string.sub(fields[i], 1, 2) == 'o:' then
                local _, _, at = string.find(fields[i + 1], ':(%d+)$')
                if at and tonumber(at) < now - 600000 then redis.call('HDEL', KEYS[1], fields[i]) end
              end
            end
          end
        end
        if idkey then
          local seen = redis.call('GET', idkey)
          if seen then
            local sep = string.find(seen, ':', 1, true)
            if sep and string.sub(seen, 1, sep - 1) == epoch then
              return {tonumber(string.sub(seen, sep + 1)), epoch, 1}
            end
          end
        end
        seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
        local expiry = tonumber(ARGV[6])
        local maxHistory = tonumber(ARGV[3])
        if maxHistory > 0 then
          local expires = now + tonumber(ARGV[4])
          redis.call('ZADD', KEYS[2], seq, string.format('%d:%d:%d:', seq, now, expires) .. ARGV[2])
          redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(maxHistory + 1))
          trim_expired(KEYS[2])
          redis.call('PEXPIRE', KEYS[2], expiry)
        else
          redis.call('DEL', KEYS[2])
        end
        if idkey then
          redis.call('SET', idkey, epoch .. ':' .. string.format('%d', seq), 'PX', ARGV[5])
        end
        if origin then
          redis.call('HSET', KEYS[1], origin, string.format('%d:%d:%d:%d', number, item, seq, now))
          redis.call('ZADD', stored, number, string.format('%d:%d:%d:', number, item, seq) .. epoch)
          local floor = tonumber(ARGV[12] or '0')
          if floor > 0 then redis.call('ZREMRANGEBYSCORE', stored, '-inf', '(' .. string.format('%d', floor)) end
          redis.call('PEXPIRE', stored, 600000)
        end
        keep_until(KEYS[1], expiry)
        if ARGV[7] ~= '' then
          redis.call('PUBLISH', ARGV[7], string.format('%d:%d:', seq, now) .. epoch .. '::' .. ARGV[2])
        end
        return {seq, epoch, 0}
        """, keepsCallOrder: true);

    // KEYS: pos, log. ARGV: fresh epoch, mode (after|last|before|position), afterSeq or beforeSeq, limit, keyExpiryMs,
    // maxBytes (backward reads: stop once the members passed it, keeping at least one; 0 = no limit).
    // Reply: {epoch, seq, complete, truncated, pseq (the last presence event's number: RedisPresence), member...}. A backward read walks from the newest member down in steps, so
    // a page cut by bytes never loads the rest of the limit into the script.
    private static readonly RedisLuaScript s_read = new(Prelude + """
        local epoch, seq = ensure_epoch(KEYS[1], KEYS[2], ARGV[1])
        keep_until(KEYS[1], tonumber(ARGV[5]))
        local mode = ARGV[2]
        local pseq = tonumber(redis.call('HGET', KEYS[1], 'pseq') or '0')
        if mode == 'position' then return {epoch, seq, 1, 0, pseq} end
        trim_expired(KEYS[2])
        local limit = tonumber(ARGV[4])
        local reply = {epoch, seq, 1, 0, pseq}
        local items
        if mode == 'last' or mode == 'before' then
          local top = mode == 'last' and '+inf' or '(' .. ARGV[3]
          local budget = tonumber(ARGV[6])
          local bytes = 0
          items = {}
          while #items < limit do
            local step = math.min(64, limit - #items)
            local chunk = redis.call('ZREVRANGEBYSCORE', KEYS[2], top, '-inf', 'LIMIT', #items, step)
            for i = 1, #chunk do
              bytes = bytes + #chunk[i]
              if budget > 0 and #items > 0 and bytes > budget then
                reply[4] = 1
                break
              end
              items[#items + 1] = chunk[i]
            end
            if reply[4] == 1 or #chunk < step then break end
          end
          local n = #items
          for i = 1, math.floor(n / 2) do items[i], items[n - i + 1] = items[n - i + 1], items[i] end
        else
          local after = tonumber(ARGV[3])
          if after >= seq then return reply end
          items = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[3], '+inf', 'LIMIT', 0, limit)
          local first = items[1] and tonumber(string.match(items[1], '^(%d+):'))
          if first ~= after + 1 then reply[3] = 0 end
        end
        for i = 1, #items do reply[#reply + 1] = items[i] end
        return reply
        """);

    private readonly IDatabaseAsync _database;
    private readonly long _keyExpiryMs;
    private bool? _isCluster;

    /// <param name="database">The database every operation uses (of the process's one multiplexer, <see cref="RedisConnector"/>).</param>
    /// <param name="keyExpiry">
    /// How long a channel's keys live after its last append or read (default 1 hour); an append keeps them at least
    /// its history TTL and dedupe window. A channel idle longer starts a new epoch, as the in-memory routing's idle sweep does.
    /// </param>
    public RedisChannelLog(IDatabaseAsync database, TimeSpan? keyExpiry = null)
    {
        ArgumentNullException.ThrowIfNull(database);
        _database = database;
        _keyExpiryMs = ToMilliseconds(keyExpiry ?? TimeSpan.FromHours(1), nameof(keyExpiry));
    }

    /// <summary>The key prefix of a channel, hash tag included: <c>relay:{&lt;len(app)&gt;:&lt;app&gt;:&lt;channel&gt;}:</c>.</summary>
    public static string KeyPrefix(string app, string channel) => RedisKeys.ChannelPrefix(app, channel);

    /// <summary>
    /// Appends a message: gives it the channel's next seq, keeps it in the history (at most <paramref name="maxHistory"/>
    /// messages, each for <paramref name="historyTtl"/>) and remembers <paramref name="id"/> for <paramref name="dedupeWindow"/>.
    /// When <paramref name="id"/> was appended on this channel, in this epoch, within the window, nothing is appended and
    /// the first seq is returned with <see cref="ChannelAppendResult.Duplicate"/> set.
    /// </summary>
    public async Task<ChannelAppendResult> AppendAsync(
        string app,
        string channel,
        string? id,
        ReadOnlyMemory<byte> payload,
        int maxHistory,
        TimeSpan historyTtl,
        TimeSpan dedupeWindow) =>
        (await AppendCoreAsync(app, channel, id, payload, maxHistory, historyTtl, dedupeWindow, publishTo: null, fence: null).ConfigureAwait(false))!.Value;

    /// <summary>
    /// <see cref="AppendAsync"/>, and in the same script (so in seq order, with no second round trip) publishes the
    /// sequenced message <c>seq:timestampMs:epoch::payload</c> on <paramref name="publishTo"/> (see <see cref="BusCodec"/>).
    /// With <paramref name="fence"/> (the fencing token the writer's shard lease was taken with, <see cref="RedisKeys.Fences"/>),
    /// nothing happens and null is returned when the channel was written with a higher token: a shard's former owner cannot
    /// append once the new owner wrote to the channel. With <paramref name="origin"/> (its sender's number; <paramref name="item"/>
    /// is the message's index in that request), a number and item the sender stored on the channel before is a duplicate
    /// (the seq it stored, so a resend whose first answer was lost is answered again), or
    /// <see cref="ChannelAppendResult.HandledBefore"/> once its record is gone (below <see cref="PublishOrigin.Floor"/>,
    /// or older than ten minutes): nothing is appended either way.
    /// </summary>
    public Task<ChannelAppendResult?> AppendAndPublishAsync(
        string app,
        string channel,
        string? id,
        ReadOnlyMemory<byte> payload,
        int maxHistory,
        TimeSpan historyTtl,
        TimeSpan dedupeWindow,
        string publishTo,
        string? fence,
        PublishOrigin? origin = null,
        int item = 0)
    {
        ArgumentException.ThrowIfNullOrEmpty(publishTo);
        return AppendCoreAsync(app, channel, id, payload, maxHistory, historyTtl, dedupeWindow, publishTo, fence, origin, item);
    }

    private async Task<ChannelAppendResult?> AppendCoreAsync(
        string app,
        string channel,
        string? id,
        ReadOnlyMemory<byte> payload,
        int maxHistory,
        TimeSpan historyTtl,
        TimeSpan dedupeWindow,
        string? publishTo,
        string? fence,
        PublishOrigin? origin = null,
        int item = 0)
    {
        var prefix = KeyPrefix(app, channel);
        ArgumentOutOfRangeException.ThrowIfNegative(maxHistory);
        var historyMs = maxHistory > 0 ? ToMilliseconds(historyTtl, nameof(historyTtl)) : 0;
        var dedupe = !string.IsNullOrEmpty(id) && dedupeWindow > TimeSpan.Zero;
        var dedupeMs = dedupe ? ToMilliseconds(dedupeWindow, nameof(dedupeWindow)) : 0;
        var keyExpiryMs = Math.Max(_keyExpiryMs, Math.Max(historyMs, dedupeMs));

        RedisKey[] keys = (dedupe, origin) switch
        {
            (true, not null) => [RedisKeys.Position(prefix), RedisKeys.Log(prefix), RedisKeys.Id(prefix, id!), RedisKeys.Origin(prefix, origin.Sender)],
            (true, null) => [RedisKeys.Position(prefix), RedisKeys.Log(prefix), RedisKeys.Id(prefix, id!)],
            (false, not null) => [RedisKeys.Position(prefix), RedisKeys.Log(prefix), RedisKeys.Origin(prefix, origin.Sender)],
            (false, null) => [RedisKeys.Position(prefix), RedisKeys.Log(prefix)],
        };
        var reply = (RedisResult[])(await s_append.EvaluateAsync(
            _database,
            keys,
            [NewEpoch(), payload, maxHistory, historyMs, Math.Max(dedupeMs, 1), keyExpiryMs, publishTo ?? "", fence ?? "", origin?.Sender ?? "", origin?.Number ?? 0, item, origin?.Floor ?? 0]).ConfigureAwait(false))!;
        var seq = (long)reply[0];
        return seq switch
        {
            -1 => null,
            -2 => new ChannelAppendResult(0, (string)reply[1]!, Duplicate: false, HandledBefore: true),
            _ => new ChannelAppendResult(seq, (string)reply[1]!, (long)reply[2] == 1),
        };
    }

    /// <summary>
    /// Waits until <paramref name="replicas"/> replicas of the master that holds the channel hold every write made so far on
    /// this multiplexer's connection to it (Redis <c>WAIT</c>), at most <paramref name="timeout"/>; returns how many do.
    /// Call it right after the appends it covers, before awaiting them, so it goes out behind them on the same connection.
    /// </summary>
    public async Task<long> WaitForReplicasAsync(string app, string channel, int replicas, TimeSpan timeout)
    {
        var timeoutMs = ToMilliseconds(timeout, nameof(timeout));

        // WAIT names no key: in Cluster it must go to the channel's master (the one server that took the appends); on
        // one server or Sentinel the database's master is that server.
        var multiplexer = _database.Multiplexer;
        if (_isCluster ??= RedisConnector.IsCluster(multiplexer))
        {
            var server = multiplexer.GetServer(RedisKeys.Position(KeyPrefix(app, channel)), flags: CommandFlags.DemandMaster);
            return (long)await server.ExecuteAsync("WAIT", replicas, timeoutMs).ConfigureAwait(false);
        }

        return (long)await _database.ExecuteAsync("WAIT", replicas, timeoutMs).ConfigureAwait(false);
    }


    /// <summary>
    /// Up to <paramref name="limit"/> messages after <paramref name="afterSeq"/>, in seq order, and whether they start right
    /// after it (<see cref="ChannelReadResult.Complete"/>). Compare <see cref="ChannelReadResult.Epoch"/> with the epoch
    /// <paramref name="afterSeq"/> came from: when they differ the seqs are unrelated.
    /// </summary>
    public Task<ChannelReadResult> ReadAfterAsync(string app, string channel, long afterSeq, int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(afterSeq);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        return ReadAsync(app, channel, "after", afterSeq, limit);
    }

    /// <summary>
    /// The newest <paramref name="limit"/> messages still in the history, oldest first. With <paramref name="maxBytes"/>
    /// it stops, from the newest down, before the stored messages pass that many bytes (keeping at least one) and says
    /// <see cref="ChannelReadResult.Truncated"/>.
    /// </summary>
    public Task<ChannelReadResult> ReadLastAsync(string app, string channel, int limit, long maxBytes = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        return ReadAsync(app, channel, "last", 0, limit, maxBytes);
    }

    /// <summary>
    /// The newest <paramref name="limit"/> messages with a seq below <paramref name="beforeSeq"/>, oldest first; with
    /// <paramref name="maxBytes"/>, as <see cref="ReadLastAsync"/> does.
    /// </summary>
    public Task<ChannelReadResult> ReadBeforeAsync(string app, string channel, long beforeSeq, int limit, long maxBytes = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        return ReadAsync(app, channel, "before", beforeSeq, limit, maxBytes);
    }

    /// <summary>The channel's epoch and last seq (a channel never used gets its epoch here, at seq 0).</summary>
    public async Task<ChannelLogPosition> PositionAsync(string app, string channel)
    {
        var result = await ReadAsync(app, channel, "position", 0, 1).ConfigureAwait(false);
        return new ChannelLogPosition(result.Epoch, result.Seq) { PresenceSeq = result.PresenceSeq };
    }

    private async Task<ChannelReadResult> ReadAsync(string app, string channel, string mode, long seq, int limit, long maxBytes = 0)
    {
        const int Header = 5;
        var prefix = KeyPrefix(app, channel);
        var items = (RedisResult[])(await s_read.EvaluateAsync(
            _database,
            [RedisKeys.Position(prefix), RedisKeys.Log(prefix)],
            [NewEpoch(), mode, seq, limit, _keyExpiryMs, maxBytes]).ConfigureAwait(false))!;

        var messages = new ChannelLogMessage[items.Length - Header];
        for (var i = 0; i < messages.Length; i++)
        {
            messages[i] = ParseMember((byte[])items[i + Header]!);
        }

        return new ChannelReadResult((string)items[0]!, (long)items[1], messages, (long)items[2] == 1, (long)items[3] == 1) { PresenceSeq = (long)items[4] };
    }

    // A log member is "seq:timestampMs:expiresAtMs:payload".
    private static ChannelLogMessage ParseMember(ReadOnlyMemory<byte> member)
    {
        var span = member.Span;
        var first = span.IndexOf((byte)':');
        var second = first + 1 + span[(first + 1)..].IndexOf((byte)':');
        var third = second + 1 + span[(second + 1)..].IndexOf((byte)':');
        if (first < 0 || second <= first || third <= second)
        {
            throw new FormatException("A channel log entry is malformed.");
        }

        var seq = long.Parse(span[..first], NumberStyles.None, CultureInfo.InvariantCulture);
        var timestamp = long.Parse(span[(first + 1)..second], NumberStyles.None, CultureInfo.InvariantCulture);
        return new ChannelLogMessage(seq, timestamp, member[(third + 1)..]);
    }

    internal static string NewEpoch() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    private static long ToMilliseconds(TimeSpan value, string name)
    {
        var ms = (long)Math.Ceiling(value.TotalMilliseconds);
        return ms > 0 ? ms : throw new ArgumentOutOfRangeException(name, value, "Must be at least one millisecond.");
    }
}
