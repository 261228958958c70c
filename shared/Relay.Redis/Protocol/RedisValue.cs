using System.Buffers.Text;
using System.Globalization;
using System.Numerics;
using System.Text;

namespace Relay.Redis;

/// <summary>
/// One RESP reply. A small struct over what the parser produced: the payload bytes (string types), the items
/// (aggregates; a map's keys and values alternate) or a number. Nothing is decoded until asked.
/// </summary>
public readonly struct RedisValue
{
    private static readonly byte[] s_ok = "OK"u8.ToArray();
    private static readonly byte[] s_pong = "PONG"u8.ToArray();

    // byte[] for string-like types, RedisValue[] for aggregates, null otherwise.
    private readonly object? _ref;

    // Integer, boolean (0/1), double bits, or a verbatim string's packed three-byte format.
    private readonly long _number;

    private RedisValue(RespType type, object? reference, long number)
    {
        Type = type;
        _ref = reference;
        _number = number;
    }

    /// <summary>A null reply.</summary>
    public static RedisValue Null => default;

    /// <summary>The RESP type.</summary>
    public RespType Type { get; }

    /// <summary>True for a null reply (RESP2 null bulk string or null array, RESP3 null).</summary>
    public bool IsNull => Type == RespType.Null;

    /// <summary>True for an error reply (only inside aggregates: a top-level error is thrown as <see cref="RedisServerException"/>).</summary>
    public bool IsError => Type == RespType.Error;

    /// <summary>True for arrays, maps, sets and pushes.</summary>
    public bool IsAggregate => Type is RespType.Array or RespType.Map or RespType.Set or RespType.Push;

    /// <summary>The payload of a string-like reply (simple, bulk, verbatim, error, big number); empty for other types.</summary>
    public ReadOnlyMemory<byte> Memory => _ref as byte[] ?? ReadOnlyMemory<byte>.Empty;

    /// <summary>The items of an aggregate (a map's keys and values alternate); empty for other types.</summary>
    public ReadOnlySpan<RedisValue> Items => _ref as RedisValue[] ?? [];

    /// <summary>The number of items of an aggregate (a map counts keys and values).</summary>
    public int Count => (_ref as RedisValue[])?.Length ?? 0;

    /// <summary>An item of an aggregate.</summary>
    public RedisValue this[int index] => Items[index];

    /// <summary>The three-letter format of a verbatim string (<c>txt</c>, <c>mkd</c>), else null.</summary>
    public string? VerbatimFormat => Type != RespType.VerbatimString ? null : string.Create(3, _number, static (span, packed) =>
    {
        span[0] = (char)((packed >> 16) & 0xFF);
        span[1] = (char)((packed >> 8) & 0xFF);
        span[2] = (char)(packed & 0xFF);
    });

    /// <summary>The message of an error reply, else null.</summary>
    public string? ErrorMessage => IsError ? Encoding.UTF8.GetString((byte[])_ref!) : null;

    internal static RedisValue SimpleString(ReadOnlySpan<byte> text) =>
        new(RespType.SimpleString, text.SequenceEqual("OK"u8) ? s_ok : text.SequenceEqual("PONG"u8) ? s_pong : text.ToArray(), 0);

    internal static RedisValue Create(RespType type, byte[] payload) => new(type, payload, 0);

    internal static RedisValue Integer(long value) => new(RespType.Integer, null, value);

    internal static RedisValue Double(double value) => new(RespType.Double, null, BitConverter.DoubleToInt64Bits(value));

    internal static RedisValue Boolean(bool value) => new(RespType.Boolean, null, value ? 1 : 0);

    internal static RedisValue Verbatim(ReadOnlySpan<byte> format, byte[] content) =>
        new(RespType.VerbatimString, content, (format[0] << 16) | (format[1] << 8) | format[2]);

    internal static RedisValue Aggregate(RespType type, RedisValue[] items) => new(type, items, 0);

    /// <summary>The value as text: strings decoded as UTF-8, numbers and booleans formatted; null for a null reply or an aggregate.</summary>
    public string? AsString() => Type switch
    {
        RespType.Null => null,
        RespType.Integer => _number.ToString(CultureInfo.InvariantCulture),
        RespType.Double => FormatDouble(BitConverter.Int64BitsToDouble(_number)),
        RespType.Boolean => _number != 0 ? "true" : "false",
        _ when _ref is byte[] bytes => Encoding.UTF8.GetString(bytes),
        _ => null,
    };

    /// <summary>The value as a 64-bit integer: an integer, a boolean, or a string holding one.</summary>
    /// <exception cref="InvalidCastException">The value is not an integer.</exception>
    public long AsInt64()
    {
        switch (Type)
        {
            case RespType.Integer:
            case RespType.Boolean:
                return _number;
            case RespType.SimpleString or RespType.BulkString or RespType.BigNumber or RespType.VerbatimString:
                var bytes = (byte[])_ref!;
                if (Utf8Parser.TryParse(bytes, out long value, out var consumed) && consumed == bytes.Length)
                {
                    return value;
                }

                break;
        }

        throw new InvalidCastException($"A Redis {Type} reply ({this}) is not an integer.");
    }

    /// <summary>The value as a double: a RESP3 double, an integer, or a string holding one (<c>inf</c>, <c>-inf</c> too).</summary>
    /// <exception cref="InvalidCastException">The value is not a number.</exception>
    public double AsDouble()
    {
        switch (Type)
        {
            case RespType.Double:
                return BitConverter.Int64BitsToDouble(_number);
            case RespType.Integer:
                return _number;
            case RespType.SimpleString or RespType.BulkString or RespType.VerbatimString:
                if (RespParser.TryParseDouble((byte[])_ref!, out var value))
                {
                    return value;
                }

                break;
        }

        throw new InvalidCastException($"A Redis {Type} reply ({this}) is not a number.");
    }

    /// <summary>The value as a boolean: a RESP3 boolean, or an integer (non-zero is true, as RESP2 replies them).</summary>
    /// <exception cref="InvalidCastException">The value is neither.</exception>
    public bool AsBoolean() => Type is RespType.Boolean or RespType.Integer
        ? _number != 0
        : throw new InvalidCastException($"A Redis {Type} reply ({this}) is not a boolean.");

    /// <summary>The value as a big integer: a RESP3 big number, an integer, or a string holding one.</summary>
    public BigInteger AsBigInteger() => Type == RespType.Integer
        ? _number
        : BigInteger.Parse(AsString() ?? throw new InvalidCastException("A null Redis reply is not a number."), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);

    /// <summary>A readable form for messages and tests: <c>"text"</c>, <c>42</c>, <c>(error) ...</c>, <c>[a, b]</c>, <c>{k: v}</c>, <c>~[...]</c>, <c>&gt;[...]</c>.</summary>
    public override string ToString()
    {
        switch (Type)
        {
            case RespType.Null:
                return "null";
            case RespType.Error:
                return "(error) " + ErrorMessage;
            case RespType.Integer:
            case RespType.Double:
            case RespType.Boolean:
                return AsString()!;
            case RespType.BigNumber:
                return "(big) " + AsString();
            case RespType.VerbatimString:
                return VerbatimFormat + ":\"" + AsString() + "\"";
            case RespType.SimpleString:
            case RespType.BulkString:
                return "\"" + AsString() + "\"";
        }

        var items = (RedisValue[])_ref!;
        var builder = new StringBuilder();
        builder.Append(Type switch { RespType.Map => "{", RespType.Set => "~[", RespType.Push => ">[", _ => "[" });
        for (var i = 0; i < items.Length; i++)
        {
            if (i > 0)
            {
                builder.Append(Type == RespType.Map && i % 2 == 1 ? ": " : ", ");
            }

            builder.Append(items[i].ToString());
        }

        return builder.Append(Type == RespType.Map ? "}" : "]").ToString();
    }

    private static string FormatDouble(double value) => double.IsPositiveInfinity(value) ? "inf"
        : double.IsNegativeInfinity(value) ? "-inf"
        : value.ToString("R", CultureInfo.InvariantCulture);
}
