using Relay.Core.Messages;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// Channel presence kept in Redis: who is present on a channel, per (clientId, connectionId), and which node holds each
/// connection, so a node that dies can be evicted. Each change is one Lua script that also publishes the presence event
/// (enter for a client's first connection, leave for its last, update otherwise) to fan-out, in order with the channel's
/// messages. Events are numbered per channel and epoch (<c>pseq</c>, apart from message seqs) and the last
/// <see cref="KeptEvents"/> kept, so a node that missed one reads it back (<see cref="ReadAfterAsync"/>).
/// </summary>
/// <remarks>
/// Keys, next to the channel log's (<see cref="RedisChannelLog.KeyPrefix"/>): <c>…:members</c> (hash: <c>clientId\nconnectionId</c>
/// → <c>nodeId\nbody</c>), <c>…:clients</c> (hash: clientId → connections) and, per node, <see cref="RedisKeys.NodePresence"/>
/// (set of <c>publishChannel\nprefix</c> where the node has members: a leave goes to the channel's fan-out shard), and
/// <c>…:plog</c> (list of the channel's recent events as published, oldest first; expires <see cref="KeptFor"/> after the last). Member keys carry no expiry: they live as long as their node;
/// <see cref="EvictNodeAsync"/> removes a dead node's members (fan-out calls it when a node's heartbeat stops).
/// Redis Cluster: each script touches one channel's keys only (one slot). The node's index is in the bus's slot, so it is
/// written by a command of its own, before the member (the index may name more channels than hold members, never fewer),
/// and an eviction runs one script per channel it names.
/// </remarks>
public sealed class RedisPresence(IDatabaseAsync database)
{
    /// <summary>
    /// Presence events kept per channel for nodes to read back (<see cref="ReadAfterAsync"/>): a node repairs a gap
    /// within seconds (a fan-out lease lapse, a shard handover), so 512 covers a 1,000-member channel churning at 100
    /// events/s for five seconds.
    /// </summary>
    public const int KeptEvents = 512;

    /// <summary>How long a channel's presence events are kept after its last change (a node resyncs within seconds).</summary>
    public static readonly TimeSpan KeptFor = TimeSpan.FromMinutes(2);

    // KEYS (every script that changes members): the channel's pos, log, members, clients, plog.
    private static readonly string s_prelude = $$"""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local pos, log, members, clients, plog = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
        local function epoch_of(fresh)
          local epoch = redis.call('HGET', pos, 'epoch')
          if epoch then return epoch end
          redis.call('DEL', pos, log, plog)
          redis.call('HSET', pos, 'epoch', fresh, 'seq', 0)
          return fresh
        end
        -- Numbers the event (pseq, per epoch), keeps it in plog for nodes that missed it, and publishes it.
        local function emit(channel, epoch, action, body)
          local pseq = redis.call('HINCRBY', pos, 'pseq', 1)
          local event = string.format('%d:%d:', pseq, now) .. epoch .. ':' .. action .. ':' .. body
          redis.call('RPUSH', plog, event)
          if redis.call('LLEN', plog) > {{KeptEvents}} then redis.call('LTRIM', plog, -{{KeptEvents}}, -1) end
          redis.call('PEXPIRE', plog, {{(long)KeptFor.TotalMilliseconds}})
          redis.call('PUBLISH', channel, event)
        end
        local function body_of(value)
          return string.sub(value, string.find(value, '\n', 1, true) + 1)
        end
        -- Removes one member; emits leave when it was the client's last connection.
        local function remove(field, client, body, channel, fresh)
          local old = redis.call('HGET', members, field)
          if not old then return 0 end
          redis.call('HDEL', members, field)
          if redis.call('HINCRBY', clients, client, -1) <= 0 then
            redis.call('HDEL', clients, client)
            if body == '' then body = body_of(old) end
            emit(channel, epoch_of(fresh), 'leave', body)
          end
          return 1
        end

        """;

    // ARGV: action, clientId, connectionId, nodeId, body, publish channel, fresh epoch, fencing token ('' = unfenced; as
    // the channel log's append: pos keeps the highest that wrote), most members. Returns -1 when fenced out, -2 when a
    // new member finds the set full.
    private static readonly RedisLuaScript s_change = new(s_prelude + """
        local token = ARGV[8]
        if token ~= '' then
          local held = redis.call('HGET', pos, 'fence')
          if held and tonumber(held) > tonumber(token) then return -1 end
        end
        local function keep_fence()
          if token ~= '' and redis.call('EXISTS', pos) == 1 and redis.call('HGET', pos, 'fence') ~= token then
            redis.call('HSET', pos, 'fence', token)
          end
        end
        local action, client = ARGV[1], ARGV[2]
        local field = client .. '\n' .. ARGV[3]
        if action == 'leave' then
          local removed = remove(field, client, ARGV[5], ARGV[6], ARGV[7])
          keep_fence()
          return removed
        end
        local epoch = epoch_of(ARGV[7])
        keep_fence()
        local existed = redis.call('HEXISTS', members, field) == 1
        if not existed and redis.call('HLEN', members) >= tonumber(ARGV[9]) then return -2 end
        local present = tonumber(redis.call('HGET', clients, client) or '0') > 0
        redis.call('HSET', members, field, ARGV[4] .. '\n' .. ARGV[5])
        if not existed then redis.call('HINCRBY', clients, client, 1) end
        local event = 'update'
        if not present then event = 'enter' end
        emit(ARGV[6], epoch, event, ARGV[5])
        return 1
        """);

    // ARGV: nodeId, publish channel, fresh epoch. Removes the node's members of one channel; reply: how many.
    private static readonly RedisLuaScript s_evict = new(s_prelude + """
        local removed = 0
        local mark = ARGV[1] .. '\n'
        local all = redis.call('HGETALL', members)
        for i = 1, #all, 2 do
          if string.sub(all[i + 1], 1, #mark) == mark then
            local client = string.sub(all[i], 1, string.find(all[i], '\n', 1, true) - 1)
            removed = removed + remove(all[i], client, '', ARGV[2], ARGV[3])
          end
        end
        return removed
        """);

    // KEYS: pos, plog. ARGV: after, limit. Reply: {epoch ('' for a channel never used), pseq, complete, event...}. Reads
    // only: a channel without a position gets none here (its first change makes the epoch).
    private static readonly RedisLuaScript s_readAfter = new("""
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then return {'', 0, 1} end
        local pseq = tonumber(redis.call('HGET', KEYS[1], 'pseq') or '0')
        local after, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
        local reply = {epoch, pseq, 1}
        if after >= pseq then return reply end
        local first = nil
        for _, event in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
          local n, of = string.match(event, '^(%d+):%d+:([^:]*):')
          n = tonumber(n)
          if of == epoch and n > after then
            first = first or n
            reply[#reply + 1] = event
            if #reply - 3 >= limit then break end
          end
        end
        if first ~= after + 1 then reply[3] = 0 end
        return reply
        """);

    /// <summary>
    /// Applies <paramref name="action"/> (<c>enter</c>, <c>update</c>, <c>leave</c>) for a connection held by <paramref name="nodeId"/>
    /// and publishes the resulting presence event on <paramref name="publishTo"/>. <paramref name="record"/> is the member
    /// (app, channel, clientId, connectionId, data); for <c>leave</c> without data the member's last data goes out.
    /// With <paramref name="fence"/> (a shard lease's fencing token, as <see cref="RedisChannelLog.AppendAndPublishAsync"/>
    /// takes it), nothing happens when the channel was written with a higher one (<see cref="PresenceChangeResult.NotOwner"/>).
    /// A member not yet present is refused when the channel has <paramref name="maxMembers"/> already (<see cref="PresenceChangeResult.Full"/>).
    /// </summary>
    public async Task<PresenceChangeResult> ChangeAsync(string action, string nodeId, RelayMessage record, string publishTo, string? fence = null, int maxMembers = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(record);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxMembers);
        var prefix = RedisChannelLog.KeyPrefix(record.App, record.Channel);
        var body = action == "leave" && record.Data.IsEmpty ? [] : BusCodec.EncodeBody(record);
        if (action != "leave")
        {
            // The node's index first: a member is never in Redis without its channel in the index that evicts it.
            // Entries are "publishChannel\nprefix": an eviction's leave goes to the channel's fan-out shard.
            await database.SetAddAsync(RedisKeys.NodePresence(nodeId), publishTo + "\n" + prefix).ConfigureAwait(false);
        }

        var reply = await s_change.EvaluateAsync(
            database,
            Keys(prefix),
            [action, record.ClientId!, record.ConnectionId!, nodeId, body, publishTo, RedisChannelLog.NewEpoch(), fence ?? "", maxMembers]).ConfigureAwait(false);
        return (long)reply switch
        {
            -1 => PresenceChangeResult.NotOwner,
            -2 => PresenceChangeResult.Full,
            _ => PresenceChangeResult.Applied,
        };
    }

    /// <summary>
    /// Up to <paramref name="limit"/> of the channel's presence events after number <paramref name="afterSeq"/> (the
    /// <c>pseq</c> a node saw last, carried in an event's <see cref="RelayMessage.Seq"/>), oldest first, as they were
    /// published; whether they start right after it; and the channel's epoch and last presence number. Compare the
    /// epoch with the one <paramref name="afterSeq"/> came from: when they differ the numbers are unrelated.
    /// </summary>
    public async Task<PresenceReadResult> ReadAfterAsync(string app, string channel, long afterSeq, int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(afterSeq);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        var prefix = RedisChannelLog.KeyPrefix(app, channel);
        var items = (RedisResult[])(await s_readAfter.EvaluateAsync(
            database,
            [RedisKeys.Position(prefix), RedisKeys.PresenceLog(prefix)],
            [afterSeq, limit]).ConfigureAwait(false))!;
        const int Header = 3;
        var events = new RelayMessage[items.Length - Header];
        for (var i = 0; i < events.Length; i++)
        {
            events[i] = BusCodec.DecodeSequenced((byte[])items[i + Header]!);
        }

        return new PresenceReadResult((string)items[0]!, (long)items[1], events, (long)items[2] == 1);
    }

    /// <summary>The present members of a channel (one record per connection).</summary>
    public async Task<IReadOnlyList<RelayMessage>> MembersAsync(string app, string channel)
    {
        var all = await database.HashGetAllAsync(RedisKeys.Members(RedisKeys.ChannelPrefix(app, channel))).ConfigureAwait(false);
        var members = new List<RelayMessage>(all.Length);
        foreach (var entry in all)
        {
            var bytes = (ReadOnlyMemory<byte>)entry.Value;
            var body = bytes[(bytes.Span.IndexOf((byte)'\n') + 1)..];
            members.Add(BusCodec.DecodeBody(body, seq: 0, timestamp: 0, epoch: "", presenceAction: "present"));
        }

        return members;
    }

    /// <summary>
    /// Removes every member a node held (it died), publishing each leave event where the member's changes went (its
    /// channel's fan-out shard; <paramref name="publishTo"/> for an entry written before fan-out was sharded); returns how
    /// many were removed. One script per channel in the node's index (each in its channel's slot), each channel dropped
    /// from the index once done.
    /// </summary>
    public async Task<long> EvictNodeAsync(string nodeId, string publishTo)
    {
        var index = RedisKeys.NodePresence(nodeId);
        long removed = 0;
        foreach (var entry in await database.SetMembersAsync(index).ConfigureAwait(false))
        {
            // "publishChannel\nprefix"; a bare prefix (written before fan-out was sharded) publishes on publishTo.
            var held = (string)entry!;
            var split = held.IndexOf('\n', StringComparison.Ordinal);
            var (channel, prefix) = split < 0 ? (publishTo, held) : (held[..split], held[(split + 1)..]);
            removed += (long)await s_evict.EvaluateAsync(database, Keys(prefix), [nodeId, channel, RedisChannelLog.NewEpoch()]).ConfigureAwait(false);
            await database.SetRemoveAsync(index, entry).ConfigureAwait(false);
        }

        return removed;
    }

    private static RedisKey[] Keys(string prefix) =>
        [RedisKeys.Position(prefix), RedisKeys.Log(prefix), RedisKeys.Members(prefix), RedisKeys.Clients(prefix), RedisKeys.PresenceLog(prefix)];
}
