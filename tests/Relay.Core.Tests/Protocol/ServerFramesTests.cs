using System.Text;
using System.Text.Json;
using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Core.Tests.Protocol;

public sealed class ServerFramesTests
{
    [Fact]
    public void EncodeMessagePush_JsonData_WritesSpecFields()
    {
        var message = new RelayMessage
        {
            App = "a", Channel = "chat:lobby", Seq = 48, Epoch = "e9x2", Id = "k1", Name = "chat",
            Data = Encoding.UTF8.GetBytes("""{"text":"hi é"}"""), ClientId = "alice", Timestamp = 1795300000000,
        };
        using var doc = JsonDocument.Parse(ServerFrames.EncodeMessagePush(message));
        var root = doc.RootElement;
        Assert.Equal("message", root.GetProperty("type").GetString());
        Assert.Equal("chat:lobby", root.GetProperty("channel").GetString());
        Assert.Equal(48, root.GetProperty("seq").GetInt64());
        Assert.Equal("e9x2", root.GetProperty("epoch").GetString());
        Assert.Equal("k1", root.GetProperty("id").GetString());
        Assert.Equal("chat", root.GetProperty("name").GetString());
        Assert.Equal("hi é", root.GetProperty("data").GetProperty("text").GetString());
        Assert.Equal("alice", root.GetProperty("clientId").GetString());
        Assert.Equal(1795300000000, root.GetProperty("timestamp").GetInt64());
        Assert.False(root.TryGetProperty("encoding", out _));
    }

    [Theory]
    [InlineData("17", "chat:lobby", 1L)]
    [InlineData("\"a\\\"b\"", "chat:\"q\"\\b/ünï/😀<&>'", 9_007_199_254_740_993L)]
    [InlineData(null, "x", 0L)]
    [InlineData("-3.5e2", "room/" + "long-level-name-long-level-name", long.MaxValue)]
    public void PublishOk_IsTheFrameTheWriterWrites(string? reference, string channel, long seq)
    {
        var referenceJson = reference is null ? null : Encoding.UTF8.GetBytes(reference);
        byte[] expected;
        using (var frame = FrameWriter.Rent())
        {
            ServerFrames.BeginReply(frame.Writer, "ok", referenceJson);
            frame.Writer.WriteString("channel"u8, channel);
            frame.Writer.WriteNumber("seq"u8, seq);
            frame.Writer.WriteEndObject();
            expected = frame.ToArray();
        }

        var ok = ServerFrames.PublishOk(referenceJson, ServerFrames.JsonString(channel), seq);

        Assert.Equal(Encoding.UTF8.GetString(expected), Encoding.UTF8.GetString(ok));
        using var parsed = JsonDocument.Parse(ok);
        Assert.Equal(channel, parsed.RootElement.GetProperty("channel").GetString());
        Assert.Equal(seq, parsed.RootElement.GetProperty("seq").GetInt64());
        Assert.Equal(reference is not null, parsed.RootElement.TryGetProperty("ref", out _));
    }

    [Theory]
    [InlineData("chat:lobby", "e9x2", "k1", "chat", """{"text":"hi é"}""", "alice", 48L, 1795300000000L)]
    [InlineData("a", "e", null, null, "17", null, 0L, 0L)]
    [InlineData("room/x/#", "E-1", "id with spaces", null, "", "c", long.MaxValue, long.MinValue)]
    [InlineData("x", "e", null, "n", "", null, 1L, -1L)]
    [InlineData("sport/x/score", "ep", "i", "n", "[1,2,{\"a\":null}]", null, 9_007_199_254_740_993L, 1L)]
    [InlineData("c", "e", null, null, "\"s\"", "~!#$%()*,-./:;=?@[]^_{|}", 5L, 6L)]
    public void EncodeMessagePush_PlainStrings_IsByteForByteWhatTheWriterWrites(string channel, string epoch, string? id, string? name, string data, string? clientId, long seq, long timestamp)
    {
        var message = new RelayMessage
        {
            App = "a", Channel = channel, Seq = seq, Epoch = epoch, Id = id, Name = name,
            Data = Encoding.UTF8.GetBytes(data), ClientId = clientId, Timestamp = timestamp,
        };

        var plain = ServerFrames.TryEncodePlainMessagePush(message);

        Assert.NotNull(plain);
        Assert.Equal(Encoding.UTF8.GetString(ServerFrames.EncodeWithWriter(message)), Encoding.UTF8.GetString(plain));
        Assert.Equal(plain, ServerFrames.EncodeMessagePush(message));
    }

    [Fact]
    public void EncodeMessagePush_AnyMixOfFields_IsWhatTheWriterWrites()
    {
        // Every field present or absent, plain or needing escapes, and numbers of every length: 5,000 seeded draws.
        var random = new Random(20261205);
        string? Text(bool optional)
        {
            if (optional && random.Next(3) == 0)
            {
                return null;
            }

            const string Pool = "abcXYZ019 :/#-_.~!$%()*,;=?@[]^{|}\"\\<>&'+`é\t😀";
            var length = random.Next(1, 12);
            var chars = new char[length];
            var plainOnly = random.Next(2) == 0;
            for (var i = 0; i < length; i++)
            {
                chars[i] = Pool[random.Next(plainOnly ? 22 : Pool.Length)];
            }

            return new string(chars).Replace("\uD83D", "x", StringComparison.Ordinal).Replace("\uDE00", "y", StringComparison.Ordinal);
        }

        string[] data = ["", "0", "\"s\"", "{\"a\":[1,2.5,null,true]}", "[]"];
        var plain = 0;
        for (var i = 0; i < 5_000; i++)
        {
            var message = new RelayMessage
            {
                App = "a", Channel = Text(false)!, Epoch = Text(false)!, Id = Text(true), Name = Text(true), ClientId = Text(true),
                Data = Encoding.UTF8.GetBytes(data[random.Next(data.Length)]),
                Seq = random.NextInt64(long.MinValue, long.MaxValue) >> random.Next(64),
                Timestamp = random.NextInt64(long.MinValue, long.MaxValue) >> random.Next(64),
            };
            var expected = ServerFrames.EncodeWithWriter(message);
            if (ServerFrames.TryEncodePlainMessagePush(message) is { } fast)
            {
                plain++;
                Assert.Equal(Encoding.UTF8.GetString(expected), Encoding.UTF8.GetString(fast));
            }

            Assert.Equal(expected, ServerFrames.EncodeMessagePush(message));
        }

        Assert.InRange(plain, 500, 4_500);
    }

    [Theory]
    [InlineData("chat:\"q\"", null, null)]
    [InlineData("c", "back\\slash", null)]
    [InlineData("c", null, "ünï")]
    [InlineData("<&>", null, null)]
    [InlineData("c", "tab\t", null)]
    [InlineData("c", null, "😀")]
    public void EncodeMessagePush_StringsThatNeedEscaping_GoThroughTheWriter(string channel, string? id, string? clientId)
    {
        var message = new RelayMessage { App = "a", Channel = channel, Seq = 1, Epoch = "e", Id = id, ClientId = clientId, Data = "1"u8.ToArray(), Timestamp = 2 };

        Assert.Null(ServerFrames.TryEncodePlainMessagePush(message));
        Assert.Equal(ServerFrames.EncodeWithWriter(message), ServerFrames.EncodeMessagePush(message));
        using var parsed = JsonDocument.Parse(ServerFrames.EncodeMessagePush(message));
        Assert.Equal(channel, parsed.RootElement.GetProperty("channel").GetString());
    }

    [Fact]
    public void EncodeMessagePush_BinaryData_IsBase64WithEncoding()
    {
        var message = new RelayMessage { App = "a", Channel = "c", Seq = 1, Epoch = "e", Data = new byte[] { 0xFF, 0x00, 0x01 }, DataIsJson = false };
        using var doc = JsonDocument.Parse(ServerFrames.EncodeMessagePush(message));
        Assert.Equal("base64", doc.RootElement.GetProperty("encoding").GetString());
        Assert.Equal(new byte[] { 0xFF, 0x00, 0x01 }, doc.RootElement.GetProperty("data").GetBytesFromBase64());
        Assert.False(doc.RootElement.TryGetProperty("id", out _));
    }

    [Fact]
    public void WriteError_EchoesRawRef()
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            ServerFrames.WriteError(writer, Encoding.UTF8.GetBytes("\"r-1\""), new RelayError(ErrorCodes.Forbidden, "no"));
        }

        using var doc = JsonDocument.Parse(buffer.WrittenMemory);
        Assert.Equal("error", doc.RootElement.GetProperty("type").GetString());
        Assert.Equal("r-1", doc.RootElement.GetProperty("ref").GetString());
        Assert.Equal(40300, doc.RootElement.GetProperty("code").GetInt32());
    }
}
