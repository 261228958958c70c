using System.Buffers;
using System.Text;

namespace Relay.Redis;

/// <summary>An entry of a stream: its id and its field/value pairs in order (names may repeat).</summary>
public sealed record RedisStreamEntry(string Id, IReadOnlyList<KeyValuePair<string, RedisValue>> Fields);

/// <summary>
/// Typed helpers for the commands Relay uses; anything else goes through <see cref="RedisConnection.ExecuteAsync"/>.
/// Each writes its command before returning, so argument buffers may be reused at once.
/// </summary>
public static class RedisCommands
{
    /// <summary>PING; the round trip time.</summary>
    public static async Task<TimeSpan> PingAsync(this RedisConnection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var started = TimeProvider.System.GetTimestamp();
        var reply = await connection.ExecuteAsync("PING").ConfigureAwait(false);
        if (!reply.Memory.Span.SequenceEqual("PONG"u8))
        {
            throw new RedisProtocolException($"PING was answered with {reply}.");
        }

        return TimeProvider.System.GetElapsedTime(started);
    }

    /// <summary>GET; <see cref="RedisValue.IsNull"/> when the key does not exist.</summary>
    public static Task<RedisValue> GetAsync(this RedisConnection connection, string key)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return connection.ExecuteAsync("GET", key);
    }

    /// <summary>SET with an optional expiry (PX) and NX; false when NX found the key already there.</summary>
    public static Task<bool> SetAsync(this RedisConnection connection, string key, RedisArg value, TimeSpan? expiry = null, bool onlyIfNotExists = false)
    {
        ArgumentNullException.ThrowIfNull(connection);
        Task<RedisValue> reply;
        if (expiry is { } ttl)
        {
            var ms = ToPositiveMilliseconds(ttl, nameof(expiry));
            reply = onlyIfNotExists
                ? connection.ExecuteAsync("SET", key, value, "PX", ms, "NX")
                : connection.ExecuteAsync("SET", key, value, "PX", ms);
        }
        else
        {
            reply = onlyIfNotExists
                ? connection.ExecuteAsync("SET", key, value, "NX")
                : connection.ExecuteAsync("SET", key, value);
        }

        return Map(reply, static r => !r.IsNull);
    }

    /// <summary>DEL; how many of the keys existed.</summary>
    public static Task<long> DelAsync(this RedisConnection connection, params ReadOnlySpan<string> keys)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return WithArgs(connection, "DEL", [], keys, ReadOnlySpan<RedisArg>.Empty, ToInt64);
    }

    /// <summary>EXPIRE for whole seconds, PEXPIRE otherwise; false when the key does not exist.</summary>
    public static Task<bool> ExpireAsync(this RedisConnection connection, string key, TimeSpan expiry)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var ms = ToPositiveMilliseconds(expiry, nameof(expiry));
        var reply = ms % 1000 == 0
            ? connection.ExecuteAsync("EXPIRE", key, ms / 1000)
            : connection.ExecuteAsync("PEXPIRE", key, ms);
        return Map(reply, static r => r.AsBoolean());
    }

    /// <summary>INCR; the new value.</summary>
    public static Task<long> IncrAsync(this RedisConnection connection, string key)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return Map(connection.ExecuteAsync("INCR", key), ToInt64);
    }

    /// <summary>HSET of one field; 1 when the field is new.</summary>
    public static Task<long> HSetAsync(this RedisConnection connection, string key, string field, RedisArg value)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return Map(connection.ExecuteAsync("HSET", key, field, value), ToInt64);
    }

    /// <summary>HSET of many fields; how many were new.</summary>
    public static Task<long> HSetAsync(this RedisConnection connection, string key, params ReadOnlySpan<KeyValuePair<string, RedisArg>> fields)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentOutOfRangeException.ThrowIfZero(fields.Length, nameof(fields));
        return WithPairs(connection, "HSET", [key], [], fields, ToInt64);
    }

    /// <summary>HGET; <see cref="RedisValue.IsNull"/> when the field or key does not exist.</summary>
    public static Task<RedisValue> HGetAsync(this RedisConnection connection, string key, string field)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return connection.ExecuteAsync("HGET", key, field);
    }

    /// <summary>HGETALL (a RESP2 flat array or a RESP3 map); empty when the key does not exist.</summary>
    public static Task<Dictionary<string, RedisValue>> HGetAllAsync(this RedisConnection connection, string key)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return Map(connection.ExecuteAsync("HGETALL", key), static reply =>
        {
            var result = new Dictionary<string, RedisValue>(reply.Count / 2, StringComparer.Ordinal);
            var items = reply.Items;
            for (var i = 0; i + 1 < items.Length; i += 2)
            {
                result[items[i].AsString()!] = items[i + 1];
            }

            return result;
        });
    }

    /// <summary>HDEL; how many fields were removed.</summary>
    public static Task<long> HDelAsync(this RedisConnection connection, string key, params ReadOnlySpan<string> fields)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentOutOfRangeException.ThrowIfZero(fields.Length, nameof(fields));
        return WithArgs(connection, "HDEL", [key], fields, ReadOnlySpan<RedisArg>.Empty, ToInt64);
    }

    /// <summary>ZADD of one member; 1 when it is new (0 when only its score changed).</summary>
    public static Task<long> ZAddAsync(this RedisConnection connection, string key, double score, RedisArg member)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return Map(connection.ExecuteAsync("ZADD", key, score, member), ToInt64);
    }

    /// <summary>ZRANGEBYSCORE min max [LIMIT skip take]; the members in score order. Infinities mean unbounded.</summary>
    public static Task<RedisValue[]> ZRangeByScoreAsync(this RedisConnection connection, string key, double min, double max, long skip = 0, long? take = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var reply = take is { } count || skip > 0
            ? connection.ExecuteAsync("ZRANGEBYSCORE", key, min, max, "LIMIT", skip, take ?? -1)
            : connection.ExecuteAsync("ZRANGEBYSCORE", key, min, max);
        return Map(reply, static r => r.Items.ToArray());
    }

    /// <summary>ZREMRANGEBYSCORE; how many members were removed.</summary>
    public static Task<long> ZRemRangeByScoreAsync(this RedisConnection connection, string key, double min, double max)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return Map(connection.ExecuteAsync("ZREMRANGEBYSCORE", key, min, max), ToInt64);
    }

    /// <summary>XADD [MAXLEN ~ n] id field value...; the entry's id. The trim is approximate (cheap), so the stream may hold a little more.</summary>
    public static Task<string> XAddAsync(this RedisConnection connection, string key, ReadOnlySpan<KeyValuePair<string, RedisArg>> fields, long? maxLength = null, string id = "*")
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentOutOfRangeException.ThrowIfZero(fields.Length, nameof(fields));
        if (maxLength is { } max)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(max, nameof(maxLength));
            return WithPairs(connection, "XADD", [key, "MAXLEN", "~", max, id], [], fields, static r => r.AsString()!);
        }

        return WithPairs(connection, "XADD", [key, id], [], fields, static r => r.AsString()!);
    }

    /// <summary>XRANGE start end [COUNT n]; <c>-</c> and <c>+</c> are the ends of the stream.</summary>
    public static Task<IReadOnlyList<RedisStreamEntry>> XRangeAsync(this RedisConnection connection, string key, string start = "-", string end = "+", long? count = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var reply = count is { } n
            ? connection.ExecuteAsync("XRANGE", key, start, end, "COUNT", n)
            : connection.ExecuteAsync("XRANGE", key, start, end);
        return Map(reply, static r =>
        {
            var entries = new RedisStreamEntry[r.Count];
            for (var i = 0; i < entries.Length; i++)
            {
                var entry = r[i];
                var pairs = entry[1].Items;
                var fields = new KeyValuePair<string, RedisValue>[pairs.Length / 2];
                for (var f = 0; f < fields.Length; f++)
                {
                    fields[f] = new(pairs[2 * f].AsString()!, pairs[(2 * f) + 1]);
                }

                entries[i] = new RedisStreamEntry(entry[0].AsString()!, fields);
            }

            return (IReadOnlyList<RedisStreamEntry>)entries;
        });
    }

    /// <summary>PUBLISH; how many subscribers (on this server) received it.</summary>
    public static Task<long> PublishAsync(this RedisConnection connection, string channel, RedisArg message)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return Map(connection.ExecuteAsync("PUBLISH", channel, message), ToInt64);
    }

    /// <summary>EVAL script numkeys keys... args...</summary>
    public static Task<RedisValue> EvalAsync(this RedisConnection connection, string script, ReadOnlySpan<string> keys = default, ReadOnlySpan<RedisArg> args = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return WithArgs(connection, "EVAL", [script, keys.Length], keys, args, static r => r);
    }

    /// <summary>EVALSHA sha1 numkeys keys... args...; <see cref="RedisServerException"/> with NOSCRIPT when the server does not know it.</summary>
    public static Task<RedisValue> EvalShaAsync(this RedisConnection connection, string sha1, ReadOnlySpan<string> keys = default, ReadOnlySpan<RedisArg> args = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return WithArgs(connection, "EVALSHA", [sha1, keys.Length], keys, args, static r => r);
    }

    /// <summary>SCRIPT LOAD; the script's SHA1.</summary>
    public static Task<string> ScriptLoadAsync(this RedisConnection connection, string script)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return Map(connection.ExecuteAsync("SCRIPT", "LOAD", script), static r => r.AsString()!);
    }

    private static long ToInt64(RedisValue reply) => reply.AsInt64();

    private static long ToPositiveMilliseconds(TimeSpan value, string name)
    {
        var ms = (long)Math.Ceiling(value.TotalMilliseconds);
        return ms > 0 ? ms : throw new ArgumentOutOfRangeException(name, value, "An expiry must be at least one millisecond.");
    }

    private static async Task<T> Map<T>(Task<RedisValue> reply, Func<RedisValue, T> map) => map(await reply.ConfigureAwait(false));

    // Builds head + names + values (or name/value pairs) in a pooled array: the command is encoded before this returns.
    private static Task<T> WithArgs<T>(
        RedisConnection connection,
        string command,
        ReadOnlySpan<RedisArg> head,
        ReadOnlySpan<string> names,
        ReadOnlySpan<RedisArg> values,
        Func<RedisValue, T> map)
    {
        var total = head.Length + names.Length + values.Length;
        var args = ArrayPool<RedisArg>.Shared.Rent(total);
        try
        {
            head.CopyTo(args);
            var at = head.Length;
            foreach (var name in names)
            {
                args[at++] = name;
            }

            values.CopyTo(args.AsSpan(at));
            return Map(connection.ExecuteAsync(command, args.AsSpan(0, total)), map);
        }
        finally
        {
            ArrayPool<RedisArg>.Shared.Return(args, clearArray: true);
        }
    }

    private static Task<T> WithPairs<T>(
        RedisConnection connection,
        string command,
        ReadOnlySpan<RedisArg> head,
        ReadOnlySpan<string> names,
        ReadOnlySpan<KeyValuePair<string, RedisArg>> pairs,
        Func<RedisValue, T> map)
    {
        var total = head.Length + names.Length + (2 * pairs.Length);
        var args = ArrayPool<RedisArg>.Shared.Rent(total);
        try
        {
            head.CopyTo(args);
            var at = head.Length;
            foreach (var name in names)
            {
                args[at++] = name;
            }

            foreach (var pair in pairs)
            {
                args[at++] = pair.Key;
                args[at++] = pair.Value;
            }

            return Map(connection.ExecuteAsync(command, args.AsSpan(0, total)), map);
        }
        finally
        {
            ArrayPool<RedisArg>.Shared.Return(args, clearArray: true);
        }
    }

}
