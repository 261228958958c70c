using System.Buffers;
using System.Text;
using Relay.Bus.FanOut;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Bus.Redis.Tests;

public sealed class BusCodecTests
{
    private static RelayMessage Message(bool json = true) => new()
    {
        App = "app:with:colons",
        Channel = "chat:lobby",
        Seq = 41,
        Epoch = "0a1b2c",
        Id = "k1",
        Name = "chat",
        Data = json ? Encoding.UTF8.GetBytes("""{"text":"hi","n":[1,2.5e3,null]}""") : new byte[] { 0, 255, 58, 10 },
        DataIsJson = json,
        ClientId = "alice",
        Timestamp = 1_795_300_000_000,
        TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    };

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void SequencedMessage_RoundTrips_WithJsonOrBinaryData(bool json)
    {
        var original = Message(json);
        var decoded = BusCodec.DecodeSequenced(BusCodec.EncodeSequenced(original));
        Assert.Equal(original.App, decoded.App);
        Assert.Equal(original.Channel, decoded.Channel);
        Assert.Equal(41, decoded.Seq);
        Assert.Equal("0a1b2c", decoded.Epoch);
        Assert.Equal(original.Timestamp, decoded.Timestamp);
        Assert.Equal(original.Data.ToArray(), decoded.Data.ToArray());
        Assert.Equal(json, decoded.DataIsJson);
        Assert.Equal("alice", decoded.ClientId);
        Assert.Equal(original.TraceParent, decoded.TraceParent);
        Assert.Null(decoded.PresenceAction);
    }

    internal static MessageProperties Properties() => new()
    {
        PayloadFormatIndicator = 1,
        ExpiresAt = 1_795_300_060_000,
        ContentType = "application/json",
        ResponseTopic = "replies/\u00fc",
        CorrelationData = [0, 255, 58, 10],
        UserProperties = [new("b", "2"), new("a", "1"), new("b", "3"), new("", "")],
    };

    internal static void AssertProperties(MessageProperties expected, MessageProperties? actual)
    {
        Assert.NotNull(actual);
        Assert.Equal(expected.PayloadFormatIndicator, actual.PayloadFormatIndicator);
        Assert.Equal(expected.ExpiresAt, actual.ExpiresAt);
        Assert.Equal(expected.ContentType, actual.ContentType);
        Assert.Equal(expected.ResponseTopic, actual.ResponseTopic);
        Assert.Equal(expected.CorrelationData, actual.CorrelationData);
        Assert.Equal(expected.UserProperties, actual.UserProperties);
    }

    [Fact]
    public void MqttProperties_RoundTripInSequencedMessagesHistoryAndRequests_OnlyWhereSet()
    {
        var properties = Properties();
        var original = Message();
        var message = new RelayMessage { App = original.App, Channel = original.Channel, Seq = 1, Epoch = "e", Data = original.Data, Properties = properties };
        AssertProperties(properties, BusCodec.DecodeSequenced(BusCodec.EncodeSequenced(message)).Properties);
        Assert.Null(BusCodec.DecodeSequenced(BusCodec.EncodeSequenced(original)).Properties);
        Assert.DoesNotContain("\"mp\"", Encoding.UTF8.GetString(BusCodec.EncodeBody(original)), StringComparison.Ordinal);

        var history = Assert.IsType<HistoryReply>(BusCodec.DecodeReply(BusCodec.EncodeReply(3, new HistoryReply(new ChannelPosition("e", 1), [message], Complete: true))).Reply);
        AssertProperties(properties, history.Messages[0].Properties);

        var publish = new PublishRequest("app", "ch", [new PublishItem(null, new byte[] { 1 }, false, null) { Properties = properties }, new PublishItem(null, new byte[] { 2 }, false, null)], "bob", null);
        var back = Assert.IsType<PublishRequest>(BusCodec.DecodeRequest(BusCodec.EncodeRequest(7, "r", publish)).Request);
        AssertProperties(properties, back.Items[0].Properties);
        Assert.Null(back.Items[1].Properties);

        // Only what was set is written, and comes back unset.
        var some = BusCodec.DecodeSequenced(BusCodec.EncodeSequenced(new RelayMessage { App = "a", Channel = "c", Epoch = "e", Properties = new MessageProperties { ContentType = "text/plain" } })).Properties;
        Assert.Equal(("text/plain", (byte?)null, 0L, (string?)null, (byte[]?)null), (some!.ContentType, some.PayloadFormatIndicator, some.ExpiresAt, some.ResponseTopic, some.CorrelationData));
        Assert.Null(some.UserProperties);
    }

    [Fact]
    public void NodeBatch_KeepsOrderAndBoundaries()
    {
        var batch = new ArrayBufferWriter<byte>();
        var frames = Enumerable.Range(1, 5).Select(i => BusCodec.EncodeSequenced(new RelayMessage { App = "a", Channel = "c", Seq = i, Epoch = "e", Data = Encoding.UTF8.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)) })).ToList();
        foreach (var frame in frames)
        {
            BusCodec.AppendToBatch(batch, frame);
        }

        var read = BusCodec.ReadBatch(batch.WrittenMemory).Select(f => BusCodec.DecodeSequenced(f).Seq).ToList();
        Assert.Equal([1, 2, 3, 4, 5], read);
    }

    [Fact]
    public void RequestsAndReplies_RoundTrip()
    {
        var publish = new PublishRequest("app", "ch", [new PublishItem("n", Encoding.UTF8.GetBytes("\"x\""), true, "id1"), new PublishItem(null, new byte[] { 1, 2 }, false, null)], "bob", "00-aa-bb-01");
        var (correlation, replyTo, decoded) = BusCodec.DecodeRequest(BusCodec.EncodeRequest(7, "relay:bus:reply:me", publish));
        Assert.Equal(7, correlation);
        Assert.Equal("relay:bus:reply:me", replyTo);
        var back = Assert.IsType<PublishRequest>(decoded);
        Assert.Equal("bob", back.ClientId);
        Assert.Equal("00-aa-bb-01", back.TraceParent);
        Assert.Equal("\"x\"", Encoding.UTF8.GetString(back.Items[0].Data.Span));
        Assert.Equal(new byte[] { 1, 2 }, back.Items[1].Data.ToArray());
        Assert.False(back.Items[1].DataIsJson);

        var history = Assert.IsType<HistoryRequest>(BusCodec.DecodeRequest(BusCodec.EncodeRequest(1, "r", new HistoryRequest("a", "c", 10, Before: 5, AfterSeq: 2))).Request);
        Assert.Equal((10, 5L, 2L, 0L), (history.Limit, history.Before!.Value, history.AfterSeq!.Value, history.MaxBytes));
        var budgeted = Assert.IsType<HistoryRequest>(BusCodec.DecodeRequest(BusCodec.EncodeRequest(1, "r", new HistoryRequest("a", "c", 10, MaxBytes: 1 << 20))).Request);
        Assert.Equal((1L << 20, (long?)null), (budgeted.MaxBytes, budgeted.Before));
        var presence = Assert.IsType<PresenceRequest>(BusCodec.DecodeRequest(BusCodec.EncodeRequest(1, "r", new PresenceRequest("a", "c", "enter", "u", "conn", Encoding.UTF8.GetBytes("{}"), "node-1"))).Request);
        Assert.Equal(("enter", "u", "conn", "node-1"), (presence.Action, presence.ClientId, presence.ConnectionId, presence.NodeId));

        var reply = Assert.IsType<HistoryReply>(BusCodec.DecodeReply(BusCodec.EncodeReply(3, new HistoryReply(new ChannelPosition("e", 9), [Message()], Complete: true))).Reply);
        Assert.Equal(("e", 9L, true, false), (reply.Position.Epoch, reply.Position.Seq, reply.Complete, reply.Truncated));
        var cut = Assert.IsType<HistoryReply>(BusCodec.DecodeReply(BusCodec.EncodeReply(3, new HistoryReply(new ChannelPosition("e", 9), [Message()], Complete: true, Truncated: true))).Reply);
        Assert.True(cut.Truncated);
        Assert.Equal(41, reply.Messages[0].Seq);
        var events = Assert.IsType<PresenceEventsRequest>(BusCodec.DecodeRequest(BusCodec.EncodeRequest(1, "r", new PresenceEventsRequest("a", "c", AfterSeq: 12, Limit: 100))).Request);
        Assert.Equal((12L, 100), (events.AfterSeq, events.Limit));
        var numbered = Assert.IsType<PositionReply>(BusCodec.DecodeReply(BusCodec.EncodeReply(3, new PositionReply(new ChannelPosition("e", 9) { PresenceSeq = 4 }))).Reply);
        Assert.Equal(new ChannelPosition("e", 9) { PresenceSeq = 4 }, numbered.Position);
        Assert.Equal(0, reply.Position.PresenceSeq);
        var error = Assert.IsType<ErrorReply>(BusCodec.DecodeReply(BusCodec.EncodeReply(4, new ErrorReply(new RelayError(ErrorCodes.Unavailable, "busy")))).Reply);
        Assert.Equal(ErrorCodes.Unavailable, error.Error.Code);
        Assert.Equal(new InterestChange("n", "a", "c/#", 3), BusCodec.DecodeInterest(BusCodec.EncodeInterest(new InterestChange("n", "a", "c/#", 3))));
    }

    [Theory]
    [InlineData("")]
    [InlineData("12:")]
    [InlineData("x:1:e::{}")]
    [InlineData("1:2:e::{\"c\":\"only a channel\"}")]
    [InlineData("1:2:e::{\"a\":\"a\",\"c\":")]
    public void MalformedSequencedMessages_AreRefused(string frame) =>
        Assert.ThrowsAny<Exception>(() => BusCodec.DecodeSequenced(Encoding.UTF8.GetBytes(frame)));

    [Fact]
    public void MalformedBatches_AreRefused()
    {
        Assert.Throws<FormatException>(() => BusCodec.ReadBatch(new byte[] { 0, 0, 0 }).ToList());
        Assert.Throws<FormatException>(() => BusCodec.ReadBatch(new byte[] { 0, 0, 0, 9, 1 }).ToList());
        Assert.Throws<FormatException>(() => BusCodec.DecodeRequest("""{"r":1,"k":"pub"}"""u8.ToArray()));
        Assert.Throws<FormatException>(() => BusCodec.DecodeReply("""{"r":1,"k":"nope"}"""u8.ToArray()));
    }

    [Fact]
    public void ShardOf_IsStableAndSpreadsChannels()
    {
        Assert.Equal(RedisBus.ShardOf("app", "chat:lobby", 16), RedisBus.ShardOf("app", "chat:lobby", 16));
        Assert.NotEqual(RedisBus.ShardOf("a:b", "c", 1 << 20), RedisBus.ShardOf("a", "b:c", 1 << 20));
        var used = Enumerable.Range(0, 200).Select(i => RedisBus.ShardOf("app", $"ch-{i}", 16)).Distinct().Count();
        Assert.Equal(16, used);
    }
}
