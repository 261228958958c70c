using Relay.Core.Messages;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// Channel presence kept in Redis: who is present on a channel, per (clientId, connectionId), and which node holds each
/// connection, so a node that dies can be evicted. Each change is one Lua script that also publishes the presence event
/// (enter for a client's first connection, leave for its last, update otherwise) to fan-out, in order with the channel's
/// messages.
/// </summary>
/// <remarks>
/// Keys, next to the channel log's (<see cref="RedisChannelLog.KeyPrefix"/>): <c>…:members</c> (hash: <c>clientId\nconnectionId</c>
/// → <c>nodeId\nbody</c>), <c>…:clients</c> (hash: clientId → connections) and, per node, <c>relay:bus:node:&lt;id&gt;:presence</c>
/// (set of <c>publishChannel\nprefix</c> where the node has members: a leave goes to the channel's fan-out shard). Member keys carry no expiry: they live as long as their node;
/// <see cref="EvictNodeAsync"/> removes a dead node's members (fan-out calls it when a node's heartbeat stops).
/// </remarks>
public sealed class RedisPresence(IDatabaseAsync database)
{
    private const string Prelude = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local function epoch_of(prefix, fresh)
          local pos = prefix .. 'pos'
          local epoch = redis.call('HGET', pos, 'epoch')
          if epoch then return epoch end
          redis.call('DEL', pos, prefix .. 'log')
          redis.call('HSET', pos, 'epoch', fresh, 'seq', 0)
          return fresh
        end
        local function emit(channel, epoch, action, body)
          redis.call('PUBLISH', channel, string.format('0:%d:', now) .. epoch .. ':' .. action .. ':' .. body)
        end
        local function body_of(value)
          return string.sub(value, string.find(value, '\n', 1, true) + 1)
        end
        -- Removes one member; emits leave when it was the client's last connection.
        local function remove(prefix, field, client, body, channel, fresh)
          local old = redis.call('HGET', prefix .. 'members', field)
          if not old then return 0 end
          redis.call('HDEL', prefix .. 'members', field)
          if redis.call('HINCRBY', prefix .. 'clients', client, -1) <= 0 then
            redis.call('HDEL', prefix .. 'clients', client)
            if body == '' then body = body_of(old) end
            emit(channel, epoch_of(prefix, fresh), 'leave', body)
          end
          return 1
        end

        """;

    // KEYS: the node's presence index. ARGV: prefix, action, clientId, connectionId, nodeId, body, publish channel, fresh
    // epoch, lease key and owner ('' = unfenced), most members. Returns -1 when fenced out, -2 when a new member finds the set full.
    private static readonly RedisLuaScript s_change = new(Prelude + """
        if ARGV[9] ~= '' and redis.call('GET', ARGV[9]) ~= ARGV[10] then return -1 end
        local prefix, action, client = ARGV[1], ARGV[2], ARGV[3]
        local field = client .. '\n' .. ARGV[4]
        if action == 'leave' then return remove(prefix, field, client, ARGV[6], ARGV[7], ARGV[8]) end
        local existed = redis.call('HEXISTS', prefix .. 'members', field) == 1
        if not existed and redis.call('HLEN', prefix .. 'members') >= tonumber(ARGV[11]) then return -2 end
        local present = tonumber(redis.call('HGET', prefix .. 'clients', client) or '0') > 0
        redis.call('HSET', prefix .. 'members', field, ARGV[5] .. '\n' .. ARGV[6])
        if not existed then redis.call('HINCRBY', prefix .. 'clients', client, 1) end
        redis.call('SADD', KEYS[1], ARGV[7] .. '\n' .. prefix)
        local event = 'update'
        if not present then event = 'enter' end
        emit(ARGV[7], epoch_of(prefix, ARGV[8]), event, ARGV[6])
        return 1
        """);

    // KEYS: the node's presence index (entries "publishChannel\nprefix", or a bare prefix from before fan-out shards).
    // ARGV: nodeId, publish channel for bare prefixes, fresh epoch. Reply: members removed.
    private static readonly RedisLuaScript s_evict = new(Prelude + """
        local index = KEYS[1]
        local removed = 0
        local mark = ARGV[1] .. '\n'
        for _, held in ipairs(redis.call('SMEMBERS', index)) do
          local channel, prefix = ARGV[2], held
          local split = string.find(held, '\n', 1, true)
          if split then channel, prefix = string.sub(held, 1, split - 1), string.sub(held, split + 1) end
          local all = redis.call('HGETALL', prefix .. 'members')
          for i = 1, #all, 2 do
            if string.sub(all[i + 1], 1, #mark) == mark then
              local client = string.sub(all[i], 1, string.find(all[i], '\n', 1, true) - 1)
              removed = removed + remove(prefix, all[i], client, '', channel, ARGV[3])
            end
          end
        end
        redis.call('DEL', index)
        return removed
        """);

    /// <summary>
    /// Applies <paramref name="action"/> (<c>enter</c>, <c>update</c>, <c>leave</c>) for a connection held by <paramref name="nodeId"/>
    /// and publishes the resulting presence event on <paramref name="publishTo"/>. <paramref name="record"/> is the member
    /// (app, channel, clientId, connectionId, data); for <c>leave</c> without data the member's last data goes out.
    /// With <paramref name="fence"/>, nothing happens unless the key holds the owner (<see cref="PresenceChangeResult.NotOwner"/>).
    /// A member not yet present is refused when the channel has <paramref name="maxMembers"/> already (<see cref="PresenceChangeResult.Full"/>).
    /// </summary>
    public async Task<PresenceChangeResult> ChangeAsync(string action, string nodeId, RelayMessage record, string publishTo, (string Key, string Owner)? fence = null, int maxMembers = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(record);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxMembers);
        var prefix = RedisChannelLog.KeyPrefix(record.App, record.Channel);
        var body = action == "leave" && record.Data.IsEmpty ? [] : BusCodec.EncodeBody(record);
        var reply = await s_change.EvaluateAsync(
            database,
            [RedisKeys.NodePresence(nodeId)],
            [prefix, action, record.ClientId!, record.ConnectionId!, nodeId, body, publishTo, RedisChannelLog.NewEpoch(), fence?.Key ?? "", fence?.Owner ?? "", maxMembers]).ConfigureAwait(false);
        return (long)reply switch
        {
            -1 => PresenceChangeResult.NotOwner,
            -2 => PresenceChangeResult.Full,
            _ => PresenceChangeResult.Applied,
        };
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
    /// many were removed.
    /// </summary>
    public async Task<long> EvictNodeAsync(string nodeId, string publishTo)
    {
        var reply = await s_evict.EvaluateAsync(database, [RedisKeys.NodePresence(nodeId)], [nodeId, publishTo, RedisChannelLog.NewEpoch()]).ConfigureAwait(false);
        return (long)reply;
    }
}
