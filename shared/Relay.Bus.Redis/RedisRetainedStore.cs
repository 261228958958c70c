using System.Buffers.Text;
using System.Globalization;
using System.Text;
using Relay.Bus.Retained;
using Relay.Core.Channels;
using Relay.Core.Messages;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// MQTT retained messages in Redis (<c>AddRedis()</c> registers it, so the Dapr bus has it too): every ingress node reads
/// and writes the same ones, and they outlive the nodes. Per app, under <see cref="RedisKeys.RetainedPrefix"/>: a hash
/// <c>topics</c> (topic → <c>epoch \n seq \n j|b</c> then the payload's bytes; a message with MQTT 5 properties has
/// <c>J|B</c> and <c>length \n</c> of its properties' JSON (<see cref="BusCodec"/>'s <c>"mp"</c>) before them) and, for a minute after a clear,
/// <c>cleared:&lt;topic&gt;</c> (<c>epoch \n seq</c>). One script per change keeps the later publish's (see
/// <see cref="IRetainedStore"/>) and the app's limit.
/// </summary>
internal sealed class RedisRetainedStore(RedisConnector connector) : IRetainedStore
{
    // Topics read per HSCAN round trip for a pattern subscription.
    private const int ScanPage = 500;

    // KEYS: topics, cleared:<topic>. ARGV: topic, epoch, seq, stored value ('' clears), max topics, clear kept (ms).
    // Returns 0 kept, 1 cleared, 2 full, 3 superseded.
    private static readonly RedisLuaScript Set = new("""
        local function later(old)
          if not old then return true end
          local e, s = string.match(old, '^([^\n]*)\n(%d+)')
          if not e then return true end
          return e ~= ARGV[2] or tonumber(ARGV[3]) > tonumber(s)
        end
        local current = redis.call('HGET', KEYS[1], ARGV[1])
        if not later(current) or not later(redis.call('GET', KEYS[2])) then return 3 end
        if ARGV[4] == '' then
          redis.call('HDEL', KEYS[1], ARGV[1])
          redis.call('SET', KEYS[2], ARGV[2] .. '\n' .. ARGV[3], 'PX', ARGV[6])
          return 1
        end
        if not current and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return 2 end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
        redis.call('DEL', KEYS[2])
        return 0
        """);

    // KEYS: topics. ARGV: topic, max topics. 1 when a retained publish to the topic would be kept.
    private static readonly RedisLuaScript Room = new("""
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
        if redis.call('HLEN', KEYS[1]) < tonumber(ARGV[2]) then return 1 end
        return 0
        """);

    /// <inheritdoc />
    public async ValueTask<RetainedOutcome> SetAsync(RelayMessage message, int maxPerApp, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        var prefix = RedisKeys.RetainedPrefix(message.App);
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        var stored = message.Data.IsEmpty ? RedisValue.EmptyString : (RedisValue)Encode(message);
        var result = (int)await Set.EvaluateAsync(
            database,
            [prefix + "topics", prefix + "cleared:" + message.Channel],
            [message.Channel, message.Epoch, message.Seq, stored, maxPerApp, (long)RetainedOrder.ClearRemembered.TotalMilliseconds]).ConfigureAwait(false);
        return result switch
        {
            0 => RetainedOutcome.Kept,
            1 => RetainedOutcome.Cleared,
            2 => RetainedOutcome.Full,
            _ => RetainedOutcome.Superseded,
        };
    }

    /// <inheritdoc />
    public async ValueTask<bool> HasRoomForAsync(string app, string topic, int maxPerApp, CancellationToken cancellationToken)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await Room.EvaluateAsync(database, [RedisKeys.RetainedPrefix(app) + "topics"], [topic, maxPerApp]).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async ValueTask<IReadOnlyList<RelayMessage>> MatchingAsync(string app, string filter, CancellationToken cancellationToken)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        RedisKey topics = RedisKeys.RetainedPrefix(app) + "topics";
        var found = new List<RelayMessage>();
        if (!ChannelName.IsPattern(filter))
        {
            var one = await database.HashGetAsync(topics, filter).ConfigureAwait(false);
            if (!one.IsNull && Decode(app, filter, one) is { } message)
            {
                found.Add(message);
            }

            return found;
        }

        // Only topics starting with the filter's literal levels are read; the node's matcher decides the rest.
        var matcher = RetainedFilter.For(filter);
        await foreach (var entry in database.HashScanAsync(topics, EscapeGlob(matcher.LiteralPrefix) + "*", ScanPage).WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            var topic = (string)entry.Name!;
            if (matcher.Matches(topic) && Decode(app, topic, entry.Value) is { } message)
            {
                found.Add(message);
            }
        }

        return found;
    }

    private async Task<IDatabase> DatabaseAsync(CancellationToken cancellationToken) =>
        (await connector.ConnectAsync().WaitAsync(cancellationToken).ConfigureAwait(false)).GetDatabase();

    private static byte[] Encode(RelayMessage message)
    {
        var properties = message.Properties is { } p ? BusCodec.EncodeProperties(p) : null;
        var header = properties is null
            ? string.Create(CultureInfo.InvariantCulture, $"{message.Epoch}\n{message.Seq}\n{(message.DataIsJson ? 'j' : 'b')}")
            : string.Create(CultureInfo.InvariantCulture, $"{message.Epoch}\n{message.Seq}\n{(message.DataIsJson ? 'J' : 'B')}{properties.Length}\n");
        var headerLength = Encoding.UTF8.GetByteCount(header);
        var propertiesLength = properties?.Length ?? 0;
        var value = new byte[headerLength + propertiesLength + message.Data.Length];
        Encoding.UTF8.GetBytes(header, value);
        properties?.CopyTo(value, headerLength);
        message.Data.Span.CopyTo(value.AsSpan(headerLength + propertiesLength));
        return value;
    }

    // Null for a value this store did not write (left alone: never delivered).
    private static RelayMessage? Decode(string app, string topic, RedisValue stored)
    {
        ReadOnlyMemory<byte> value = (byte[])stored!;
        var span = value.Span;
        var first = span.IndexOf((byte)'\n');
        if (first < 0)
        {
            return null;
        }

        var second = span[(first + 1)..].IndexOf((byte)'\n');
        if (second < 0 || first + second + 3 > span.Length || !Utf8Parser.TryParse(span.Slice(first + 1, second), out long seq, out _))
        {
            return null;
        }

        var flag = first + second + 2;
        var dataAt = flag + 1;
        MessageProperties? properties = null;
        if (span[flag] is (byte)'J' or (byte)'B')
        {
            var end = span[dataAt..].IndexOf((byte)'\n');
            if (end < 0 || !Utf8Parser.TryParse(span.Slice(dataAt, end), out int length, out _) || dataAt + end + 1 + length > span.Length)
            {
                return null;
            }

            dataAt += end + 1;
            properties = BusCodec.DecodeProperties(span.Slice(dataAt, length));
            dataAt += length;
        }

        return new RelayMessage
        {
            App = app,
            Channel = topic,
            Epoch = Encoding.UTF8.GetString(span[..first]),
            Seq = seq,
            DataIsJson = span[flag] is (byte)'j' or (byte)'J',
            Data = value[dataAt..],
            Properties = properties,
        };
    }

    // A literal for Redis's glob MATCH: its special characters escaped.
    private static string EscapeGlob(string literal)
    {
        var escaped = new StringBuilder(literal.Length + 4);
        foreach (var c in literal)
        {
            if (c is '*' or '?' or '[' or ']' or '\\')
            {
                escaped.Append('\\');
            }

            escaped.Append(c);
        }

        return escaped.ToString();
    }
}
