using System.Buffers;
using System.Numerics;
using System.Text;

namespace Relay.Redis.Tests;

public class RespParserTests
{
    // Every RESP2 and RESP3 type, as the bytes Redis sends and the shape the parser must give back.
    public static TheoryData<string, string> Frames => new()
    {
        { "+OK\r\n", "\"OK\"" },
        { "+hello world\r\n", "\"hello world\"" },
        { "-ERR unknown command 'FOO'\r\n", "(error) ERR unknown command 'FOO'" },
        { ":0\r\n", "0" },
        { ":-42\r\n", "-42" },
        { ":9223372036854775807\r\n", "9223372036854775807" },
        { "$5\r\nhello\r\n", "\"hello\"" },
        { "$0\r\n\r\n", "\"\"" },
        { "$4\r\na\r\nb\r\n", "\"a\r\nb\"" },
        { "$-1\r\n", "null" },
        { "*-1\r\n", "null" },
        { "*0\r\n", "[]" },
        { "*3\r\n:1\r\n$3\r\nfoo\r\n*2\r\n+a\r\n-E x\r\n", "[1, \"foo\", [\"a\", (error) E x]]" },
        { "*2\r\n$-1\r\n*-1\r\n", "[null, null]" },
        { "_\r\n", "null" },
        { ",3.5\r\n", "3.5" },
        { ",-0.25\r\n", "-0.25" },
        { ",1e3\r\n", "1000" },
        { ",inf\r\n", "inf" },
        { ",-inf\r\n", "-inf" },
        { "#t\r\n", "true" },
        { "#f\r\n", "false" },
        { "(3492890328409238509324850943850943825024385\r\n", "(big) 3492890328409238509324850943850943825024385" },
        { "!21\r\nSYNTAX invalid syntax\r\n", "(error) SYNTAX invalid syntax" },
        { "=15\r\ntxt:Some string\r\n", "txt:\"Some string\"" },
        { "%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n#t\r\n", "{\"first\": 1, \"second\": true}" },
        { "%0\r\n", "{}" },
        { "~3\r\n+a\r\n:1\r\n,2.5\r\n", "~[\"a\", 1, 2.5]" },
        { ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", ">[\"message\", \"ch\", \"hi\"]" },
        { "|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:2\r\n", "[2]" },
        { "*2\r\n%1\r\n+k\r\n~1\r\n_\r\n>1\r\n(1\r\n", "[{\"k\": ~[null]}, >[(big) 1]]" },
    };

    [Theory]
    [MemberData(nameof(Frames))]
    public void Frame_WholeOrSplitAtAnyByte_ParsesTheSame(string frame, string expected)
    {
        var bytes = Encoding.UTF8.GetBytes(frame);

        AssertParses(new ReadOnlySequence<byte>(bytes), expected);
        for (var cut = 1; cut < bytes.Length; cut++)
        {
            AssertParses(Segments(bytes, cut), expected);
        }

        AssertParses(Segments(bytes, [.. Enumerable.Range(1, bytes.Length - 1)]), expected);
    }

    [Theory]
    [MemberData(nameof(Frames))]
    public void Frame_AnyProperPrefix_NeedsMoreDataAndConsumesNothing(string frame, string expected)
    {
        _ = expected;
        var bytes = Encoding.UTF8.GetBytes(frame);
        for (var length = 0; length < bytes.Length; length++)
        {
            var partial = length > 1 ? Segments(bytes.AsSpan(0, length).ToArray(), length / 2) : new ReadOnlySequence<byte>(bytes, 0, length);
            Assert.False(RespParser.TryRead(partial, out _, out var end), $"prefix of {length} bytes");
            Assert.Equal(partial.Start, end);
        }
    }

    [Fact]
    public void Frames_BackToBackInOneByteSegments_AreReadInOrder()
    {
        var frames = Frames.Select(row => ((string)row[0], (string)row[1])).ToArray();
        var bytes = Encoding.UTF8.GetBytes(string.Concat(frames.Select(f => f.Item1)));
        var buffer = Segments(bytes, [.. Enumerable.Range(1, bytes.Length - 1)]);

        foreach (var (_, expected) in frames)
        {
            Assert.True(RespParser.TryRead(buffer, out var value, out var end));
            Assert.Equal(expected, value.ToString());
            buffer = buffer.Slice(end);
        }

        Assert.True(buffer.IsEmpty);
    }

    [Fact]
    public void TypedAccessors_ReadEachType()
    {
        Assert.Equal(-42, Parse(":-42\r\n").AsInt64());
        Assert.Equal(RespType.Integer, Parse(":-42\r\n").Type);
        Assert.Equal(17, Parse("$2\r\n17\r\n").AsInt64());
        Assert.Equal(3.5, Parse(",3.5\r\n").AsDouble());
        Assert.Equal(RespType.Double, Parse(",3.5\r\n").Type);
        Assert.Equal(2.25, Parse("$4\r\n2.25\r\n").AsDouble());
        Assert.Equal(double.PositiveInfinity, Parse("$3\r\ninf\r\n").AsDouble());
        Assert.True(Parse("#t\r\n").AsBoolean());
        Assert.True(Parse(":1\r\n").AsBoolean());
        Assert.False(Parse(":0\r\n").AsBoolean());
        Assert.Equal(BigInteger.Parse("3492890328409238509324850943850943825024385", System.Globalization.CultureInfo.InvariantCulture), Parse("(3492890328409238509324850943850943825024385\r\n").AsBigInteger());
        Assert.Equal("txt", Parse("=15\r\ntxt:Some string\r\n").VerbatimFormat);
        Assert.Equal("Some string", Parse("=15\r\ntxt:Some string\r\n").AsString());
        Assert.Equal("SYNTAX invalid syntax", Parse("!21\r\nSYNTAX invalid syntax\r\n").ErrorMessage);
        Assert.True(Parse("_\r\n").IsNull);
        Assert.Null(Parse("$-1\r\n").AsString());
        Assert.Equal(RespType.Map, Parse("%1\r\n+k\r\n+v\r\n").Type);
        Assert.Equal(2, Parse("%1\r\n+k\r\n+v\r\n").Count);
        Assert.Equal(RespType.Set, Parse("~0\r\n").Type);
        Assert.Equal(RespType.Push, Parse(">1\r\n+x\r\n").Type);
        Assert.Equal([0, 13, 10, 255], Parse("$4\r\n\0\r\n\xff\r\n", latin1: true).Memory.ToArray());
        Assert.Throws<InvalidCastException>(() => Parse("+abc\r\n").AsInt64());
    }

    [Theory]
    [InlineData("?3\r\n")]
    [InlineData(":12a\r\n")]
    [InlineData("$3\r\nabcd\r\n")]
    [InlineData("$-2\r\n")]
    [InlineData("%-1\r\n")]
    [InlineData("#x\r\n")]
    [InlineData("$?\r\n")]
    [InlineData(":123456789012345678901234567890\r\n")]
    public void Garbage_IsAProtocolError(string frame)
    {
        var bytes = new ReadOnlySequence<byte>(Encoding.UTF8.GetBytes(frame));
        Assert.Throws<RedisProtocolException>(() => RespParser.TryRead(bytes, out _, out _));
    }

    [Fact]
    public void WriteCommand_WritesAnArrayOfBulkStrings()
    {
        var buffer = new ArrayBufferWriter<byte>();
        RespWriter.WriteCommand(buffer, "SET", ["k€y", new byte[] { 0, 255 }, 42, -1.5, double.PositiveInfinity, double.NegativeInfinity, ""]);
        byte[] expectedBytes = [.. "*8\r\n$3\r\nSET\r\n$5\r\nk€y\r\n$2\r\n"u8, 0, 255, .. "\r\n$2\r\n42\r\n$4\r\n-1.5\r\n$4\r\n+inf\r\n$4\r\n-inf\r\n$0\r\n\r\n"u8];
        Assert.Equal(expectedBytes, buffer.WrittenSpan.ToArray());
    }

    [Fact]
    public void Encode_LargeValue_IsWrittenWhole()
    {
        var value = new byte[200_000];
        Random.Shared.NextBytes(value);
        var encoded = RespWriter.Encode("SET", ["k", value]);
        Assert.True(RespParser.TryRead(new ReadOnlySequence<byte>(encoded), out var parsed, out _));
        Assert.Equal(value, parsed[2].Memory.ToArray());
    }

    private static RedisValue Parse(string frame, bool latin1 = false)
    {
        var bytes = latin1 ? Encoding.Latin1.GetBytes(frame) : Encoding.UTF8.GetBytes(frame);
        Assert.True(RespParser.TryRead(new ReadOnlySequence<byte>(bytes), out var value, out _));
        return value;
    }

    private static void AssertParses(ReadOnlySequence<byte> buffer, string expected)
    {
        Assert.True(RespParser.TryRead(buffer, out var value, out var end));
        Assert.Equal(expected, value.ToString());
        Assert.Equal(buffer.End, end);
    }

    /// <summary>The bytes as a multi-segment sequence cut at <paramref name="cuts"/>, as a socket might deliver them.</summary>
    internal static ReadOnlySequence<byte> Segments(byte[] bytes, params int[] cuts)
    {
        Segment? first = null;
        Segment? last = null;
        var start = 0;
        foreach (var cut in cuts.Append(bytes.Length))
        {
            var segment = new Segment(bytes.AsMemory(start, cut - start), last);
            first ??= segment;
            last = segment;
            start = cut;
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, Segment? previous)
        {
            Memory = memory;
            if (previous is not null)
            {
                RunningIndex = previous.RunningIndex + previous.Memory.Length;
                previous.Next = this;
            }
        }
    }
}
