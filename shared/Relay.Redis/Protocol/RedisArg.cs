using System.Buffers;
using System.Buffers.Text;
using System.Globalization;
using System.Text;

namespace Relay.Redis;

/// <summary>
/// One argument of a command, written as a RESP bulk string: text (UTF-8), bytes, an integer or a double.
/// Converts implicitly, so <c>ExecuteAsync("SET", key, bytes)</c> reads as the command does.
/// </summary>
public readonly struct RedisArg
{
    private readonly string? _text;
    private readonly ReadOnlyMemory<byte> _bytes;
    private readonly long _number;
    private readonly Kind _kind;

    private RedisArg(Kind kind, string? text, ReadOnlyMemory<byte> bytes, long number)
    {
        _kind = kind;
        _text = text;
        _bytes = bytes;
        _number = number;
    }

    private enum Kind : byte
    {
        Bytes = 0,
        Text,
        Integer,
        Double,
    }

    /// <summary>UTF-8 text.</summary>
    public static implicit operator RedisArg(string value) => FromString(value);

    /// <summary>Raw bytes.</summary>
    public static implicit operator RedisArg(ReadOnlyMemory<byte> value) => FromBytes(value);

    /// <summary>Raw bytes.</summary>
    public static implicit operator RedisArg(byte[] value) => FromBytes(value);

    /// <summary>An integer, in decimal.</summary>
    public static implicit operator RedisArg(long value) => FromInt64(value);

    /// <summary>An integer, in decimal.</summary>
    public static implicit operator RedisArg(int value) => FromInt64(value);

    /// <summary>A double, round-trippable; infinities as <c>+inf</c>/<c>-inf</c> (as ZADD and ZRANGEBYSCORE take them).</summary>
    public static implicit operator RedisArg(double value) => FromDouble(value);

    /// <summary>UTF-8 text.</summary>
    public static RedisArg FromString(string value) => new(Kind.Text, value ?? throw new ArgumentNullException(nameof(value)), default, 0);

    /// <summary>Raw bytes.</summary>
    public static RedisArg FromBytes(ReadOnlyMemory<byte> value) => new(Kind.Bytes, null, value, 0);

    /// <summary>An integer, in decimal.</summary>
    public static RedisArg FromInt64(long value) => new(Kind.Integer, null, default, value);

    /// <summary>A double.</summary>
    public static RedisArg FromDouble(double value) => double.IsNaN(value)
        ? throw new ArgumentException("Redis does not take NaN as a number.", nameof(value))
        : new(Kind.Double, null, default, BitConverter.DoubleToInt64Bits(value));

    internal void WriteTo(IBufferWriter<byte> writer)
    {
        switch (_kind)
        {
            case Kind.Text:
                var count = Encoding.UTF8.GetByteCount(_text!);
                RespWriter.WriteLengthLine(writer, (byte)'$', count);
                var span = writer.GetSpan(count + 2);
                Encoding.UTF8.GetBytes(_text, span);
                "\r\n"u8.CopyTo(span[count..]);
                writer.Advance(count + 2);
                break;
            case Kind.Bytes:
                RespWriter.WriteLengthLine(writer, (byte)'$', _bytes.Length);
                writer.Write(_bytes.Span);
                writer.Write("\r\n"u8);
                break;
            case Kind.Integer:
                Span<byte> digits = stackalloc byte[20];
                Utf8Formatter.TryFormat(_number, digits, out var written);
                WriteSmall(writer, digits[..written]);
                break;
            default:
                Span<byte> text = stackalloc byte[32];
                var value = BitConverter.Int64BitsToDouble(_number);
                if (double.IsInfinity(value))
                {
                    WriteSmall(writer, value > 0 ? "+inf"u8 : "-inf"u8);
                }
                else
                {
                    value.TryFormat(text, out var length, "R", CultureInfo.InvariantCulture);
                    WriteSmall(writer, text[..length]);
                }

                break;
        }
    }

    private static void WriteSmall(IBufferWriter<byte> writer, ReadOnlySpan<byte> payload)
    {
        RespWriter.WriteLengthLine(writer, (byte)'$', payload.Length);
        var span = writer.GetSpan(payload.Length + 2);
        payload.CopyTo(span);
        "\r\n"u8.CopyTo(span[payload.Length..]);
        writer.Advance(payload.Length + 2);
    }

    /// <inheritdoc />
    public override string ToString() => _kind switch
    {
        Kind.Text => _text!,
        Kind.Integer => _number.ToString(CultureInfo.InvariantCulture),
        Kind.Double => BitConverter.Int64BitsToDouble(_number).ToString("R", CultureInfo.InvariantCulture),
        _ => Encoding.UTF8.GetString(_bytes.Span),
    };
}
