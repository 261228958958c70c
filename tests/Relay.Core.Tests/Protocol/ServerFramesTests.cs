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
