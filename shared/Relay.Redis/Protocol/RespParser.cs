using System.Buffers;
using System.Buffers.Text;
using System.Globalization;

namespace Relay.Redis;

/// <summary>
/// Incremental RESP2/RESP3 reader over a <see cref="ReadOnlySequence{T}"/>. A frame is first scanned without
/// allocating (a count of values still owed, no recursion); only a complete frame is materialized, so a partial
/// frame costs nothing but the scan and consumes nothing.
/// </summary>
public static class RespParser
{
    /// <summary>The largest bulk string accepted (Redis's own proto-max-bulk-len default).</summary>
    public const long MaxBulkLength = 512L * 1024 * 1024;

    /// <summary>Deepest nesting accepted; Redis replies nest a few levels, so more is a broken stream.</summary>
    public const int MaxDepth = 64;

    // Lengths and integers fit in 20 digits plus a sign and '\r'.
    private const int MaxNumberLine = 24;

    /// <summary>
    /// Reads one complete frame from the start of <paramref name="buffer"/>. Returns false when more data is
    /// needed (nothing consumed); otherwise <paramref name="end"/> is the position after the frame.
    /// </summary>
    /// <exception cref="RedisProtocolException">The bytes are not RESP.</exception>
    public static bool TryRead(in ReadOnlySequence<byte> buffer, out RedisValue value, out SequencePosition end)
    {
        var scan = new SequenceReader<byte>(buffer);
        if (!TrySkipFrame(ref scan))
        {
            value = default;
            end = buffer.Start;
            return false;
        }

        end = scan.Position;
        var reader = new SequenceReader<byte>(buffer.Slice(0, end));
        value = ReadValue(ref reader, 0);
        return true;
    }

    private static bool TrySkipFrame(ref SequenceReader<byte> reader)
    {
        // Values still to read; aggregates add their children, attributes add theirs without being a value.
        long owed = 1;
        while (owed > 0)
        {
            if (!reader.TryRead(out var prefix))
            {
                return false;
            }

            switch (prefix)
            {
                case (byte)'+' or (byte)'-' or (byte)':' or (byte)',' or (byte)'(' or (byte)'#' or (byte)'_':
                    if (!reader.TryAdvanceTo((byte)'\n'))
                    {
                        return false;
                    }

                    owed--;
                    break;
                case (byte)'$' or (byte)'!' or (byte)'=':
                    if (!TryReadNumberLine(ref reader, out var length))
                    {
                        return false;
                    }

                    CheckBulkLength(length, prefix);
                    if (length >= 0)
                    {
                        if (reader.Remaining < length + 2)
                        {
                            return false;
                        }

                        reader.Advance(length + 2);
                    }

                    owed--;
                    break;
                case (byte)'*' or (byte)'~' or (byte)'>' or (byte)'%' or (byte)'|':
                    if (!TryReadNumberLine(ref reader, out var count))
                    {
                        return false;
                    }

                    CheckCount(count, prefix);
                    if (count > 0)
                    {
                        owed += prefix is (byte)'%' or (byte)'|' ? 2 * count : count;
                    }

                    if (prefix != (byte)'|')
                    {
                        owed--;
                    }

                    break;
                default:
                    throw new RedisProtocolException($"Unexpected RESP type byte 0x{prefix:X2} ('{(char)prefix}').");
            }
        }

        return true;
    }

    private static RedisValue ReadValue(ref SequenceReader<byte> reader, int depth)
    {
        if (depth > MaxDepth)
        {
            throw new RedisProtocolException($"RESP nesting deeper than {MaxDepth}.");
        }

        reader.TryRead(out var prefix);
        switch (prefix)
        {
            case (byte)'+':
                return WithLine(ref reader, static line => RedisValue.SimpleString(line));
            case (byte)'-':
                return WithLine(ref reader, static line => RedisValue.Create(RespType.Error, line.ToArray()));
            case (byte)'(':
                return WithLine(ref reader, static line => RedisValue.Create(RespType.BigNumber, line.ToArray()));
            case (byte)':':
                ReadNumberLine(ref reader, out var integer);
                return RedisValue.Integer(integer);
            case (byte)',':
                return WithLine(ref reader, static line => TryParseDouble(line, out var d)
                    ? RedisValue.Double(d)
                    : throw new RedisProtocolException("A RESP3 double that is not a number."));
            case (byte)'#':
                return WithLine(ref reader, static line => line.Length == 1 && line[0] is (byte)'t' or (byte)'f'
                    ? RedisValue.Boolean(line[0] == (byte)'t')
                    : throw new RedisProtocolException("A RESP3 boolean that is neither t nor f."));
            case (byte)'_':
                return WithLine(ref reader, static line => line.IsEmpty ? RedisValue.Null : throw new RedisProtocolException("A RESP3 null with a payload."));
            case (byte)'$' or (byte)'!' or (byte)'=':
                ReadNumberLine(ref reader, out var length);
                if (length < 0)
                {
                    return RedisValue.Null;
                }

                var payload = length == 0 ? [] : new byte[length];
                reader.TryCopyTo(payload);
                reader.Advance(length);
                ExpectCrlf(ref reader);
                if (prefix == (byte)'=')
                {
                    if (payload.Length < 4 || payload[3] != (byte)':')
                    {
                        throw new RedisProtocolException("A RESP3 verbatim string without its 'fmt:' prefix.");
                    }

                    return RedisValue.Verbatim(payload.AsSpan(0, 3), payload[4..]);
                }

                return RedisValue.Create(prefix == (byte)'!' ? RespType.Error : RespType.BulkString, payload);
            default:
                ReadNumberLine(ref reader, out var count);
                if (count < 0)
                {
                    return RedisValue.Null;
                }

                if (prefix == (byte)'|')
                {
                    // Attributes describe the reply that follows; nothing in Relay reads them.
                    for (var i = 0; i < 2 * count; i++)
                    {
                        ReadValue(ref reader, depth + 1);
                    }

                    return ReadValue(ref reader, depth);
                }

                var type = prefix switch
                {
                    (byte)'*' => RespType.Array,
                    (byte)'~' => RespType.Set,
                    (byte)'>' => RespType.Push,
                    _ => RespType.Map,
                };
                var size = type == RespType.Map ? 2 * count : count;
                var items = size == 0 ? [] : new RedisValue[size];
                for (var i = 0; i < items.Length; i++)
                {
                    items[i] = ReadValue(ref reader, depth + 1);
                }

                return RedisValue.Aggregate(type, items);
        }
    }

    private delegate RedisValue LineFunc(ReadOnlySpan<byte> line);

    private static RedisValue WithLine(ref SequenceReader<byte> reader, LineFunc func)
    {
        reader.TryReadTo(out ReadOnlySequence<byte> line, (byte)'\n');
        if (line.IsEmpty || !line.Slice(line.Length - 1).FirstSpan.SequenceEqual("\r"u8))
        {
            throw new RedisProtocolException("A RESP line that does not end in CRLF.");
        }

        line = line.Slice(0, line.Length - 1);
        if (line.IsSingleSegment)
        {
            return func(line.FirstSpan);
        }

        // Only lines split across pipe segments are copied; short ones on the stack.
        var length = checked((int)line.Length);
        byte[]? rented = length > 256 ? ArrayPool<byte>.Shared.Rent(length) : null;
        Span<byte> copy = rented is null ? stackalloc byte[256] : rented;
        line.CopyTo(copy);
        try
        {
            return func(copy[..length]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static void ReadNumberLine(ref SequenceReader<byte> reader, out long value)
    {
        if (!TryReadNumberLine(ref reader, out value))
        {
            throw new RedisProtocolException("A truncated RESP length.");
        }
    }

    private static bool TryReadNumberLine(ref SequenceReader<byte> reader, out long value)
    {
        value = 0;
        Span<byte> line = stackalloc byte[MaxNumberLine];
        var length = 0;
        while (true)
        {
            if (!reader.TryRead(out var b))
            {
                return false;
            }

            if (b == (byte)'\n')
            {
                break;
            }

            if (length == MaxNumberLine)
            {
                throw new RedisProtocolException("A RESP length or integer longer than 20 digits.");
            }

            line[length++] = b;
        }

        if (length < 2 || line[length - 1] != (byte)'\r')
        {
            throw new RedisProtocolException("A RESP length or integer that is empty or does not end in CRLF.");
        }

        if (line[0] == (byte)'?')
        {
            throw new RedisProtocolException("RESP3 streamed strings and aggregates are not supported (Redis does not send them).");
        }

        if (!Utf8Parser.TryParse(line[..(length - 1)], out value, out var consumed) || consumed != length - 1)
        {
            throw new RedisProtocolException("A RESP length or integer that is not a number.");
        }

        return true;
    }

    private static void ExpectCrlf(ref SequenceReader<byte> reader)
    {
        if (!reader.IsNext("\r\n"u8, advancePast: true))
        {
            throw new RedisProtocolException("A RESP bulk string longer than its declared length.");
        }
    }

    private static void CheckBulkLength(long length, byte prefix)
    {
        if (length < -1 || length > MaxBulkLength || (length == -1 && prefix != (byte)'$'))
        {
            throw new RedisProtocolException($"A RESP '{(char)prefix}' length of {length}.");
        }
    }

    private static void CheckCount(long count, byte prefix)
    {
        if (count < -1 || count > int.MaxValue / 2 || (count == -1 && prefix != (byte)'*'))
        {
            throw new RedisProtocolException($"A RESP '{(char)prefix}' count of {count}.");
        }
    }

    internal static bool TryParseDouble(ReadOnlySpan<byte> text, out double value)
    {
        if (text.SequenceEqual("inf"u8) || text.SequenceEqual("+inf"u8))
        {
            value = double.PositiveInfinity;
            return true;
        }

        if (text.SequenceEqual("-inf"u8))
        {
            value = double.NegativeInfinity;
            return true;
        }

        if (text.SequenceEqual("nan"u8))
        {
            value = double.NaN;
            return true;
        }

        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }
}
