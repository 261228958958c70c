using System.Globalization;
using System.Text;
using Relay.Core.Protocol;

namespace Relay.Core.Tests.Protocol;

public sealed class ClientFrameParserTests
{
    private static (RelayError? Error, List<ClientRequest> Requests) Parse(string frame)
    {
        var requests = new List<ClientRequest>();
        return (ClientFrameParser.Parse(Encoding.UTF8.GetBytes(frame), requests), requests);
    }

    [Fact]
    public void Parse_PublishObject_ReadsEveryField()
    {
        var (error, requests) = Parse("""{"type":"publish","ref":12,"channel":"chat:a","name":"n","id":"k","data":{"x":[1,2]},"extra":{"ignored":true}}""");
        Assert.Null(error);
        var request = Assert.Single(requests);
        Assert.Null(request.Error);
        Assert.Equal(RequestType.Publish, request.Type);
        Assert.Equal("12", Encoding.UTF8.GetString(request.Ref!));
        Assert.Equal("chat:a", request.Channel);
        Assert.Equal("n", request.Name);
        Assert.Equal("k", request.Id);
        Assert.True(request.HasData);
        Assert.Equal("""{"x":[1,2]}""", Encoding.UTF8.GetString(request.Data.Span));
    }

    [Fact]
    public void Parse_SameChannelAndNameAgain_GivesTheSameStrings()
    {
        // A publisher repeats its channels and event names: parsed once per thread, not once per request.
        var (_, first) = Parse("""[{"type":"publish","channel":"chat:room/1","name":"msg","data":1},{"type":"publish","channel":"chat:room/1","name":"msg","data":2}]""");
        var (_, later) = Parse("""{"type":"publish","channel":"chat:room/1","name":"msg","data":3}""");

        Assert.Equal("chat:room/1", first[0].Channel);
        Assert.Same(first[0].Channel, first[1].Channel);
        Assert.Same(first[0].Channel, later[0].Channel);
        Assert.Same(first[0].Name, later[0].Name);
    }

    [Fact]
    public void Parse_ChannelAndNameThatShareACacheSlot_StillGiveTheSameStrings()
    {
        // The cache hashes with this process's seed: find a channel and a name that land in the same one of its 1,024
        // slots (a one-way table made them evict each other at every publish, so both were parsed again each time).
        static int Slot(string name)
        {
            var hash = default(HashCode);
            hash.AddBytes(Encoding.ASCII.GetBytes(name));
            return hash.ToHashCode() & 1023;
        }

        var channel = "room/collide";
        var name = Enumerable.Range(0, 100_000).Select(static i => "event-" + i.ToString(CultureInfo.InvariantCulture)).First(n => Slot(n) == Slot(channel));
        var frame = $$"""{"type":"publish","channel":"{{channel}}","name":"{{name}}","data":1}""";
        var (_, first) = Parse(frame);
        var (_, again) = Parse(frame);

        Assert.Same(first[0].Channel, again[0].Channel);
        Assert.Same(first[0].Name, again[0].Name);
    }

    [Fact]
    public void Parse_ManyChannels_EachGetsItsOwnName()
    {
        // More names than the thread keeps, some sharing a slot, escaped and long ones: each request gets its own text.
        var channels = Enumerable.Range(0, 2_000).Select(static i => i % 7 == 0 ? $"chat:ünï/{i}" : $"room/{i}").Append(new string('l', 200)).ToList();
        for (var round = 0; round < 2; round++)
        {
            foreach (var channel in channels)
            {
                var (_, requests) = Parse($$"""{"type":"publish","channel":"{{channel}}","data":1}""");
                Assert.Equal(channel, requests[0].Channel);
            }
        }

        var (_, escaped) = Parse("""{"type":"publish","channel":"chat:ab","data":1}""");
        Assert.Equal("chat:ab", escaped[0].Channel);
    }

    [Theory]
    [InlineData("\"s\"")]
    [InlineData("null")]
    [InlineData("3.5")]
    [InlineData("[true,false]")]
    public void Parse_DataOfAnyJsonKind_IsKeptRaw(string data)
    {
        var (_, requests) = Parse($$"""{"type":"publish","channel":"c","data":{{data}}}""");
        Assert.Equal(data, Encoding.UTF8.GetString(requests[0].Data.Span));
    }

    [Fact]
    public void Parse_DataLaidOutOverLines_IsKeptCompact()
    {
        var (_, requests) = Parse("{\"type\":\"publish\",\"channel\":\"c\",\"data\":\r\n{ \"a\" :\n\n[1, \"x  y\"]\r}\n}");
        Assert.Equal("{\"a\":[1,\"x  y\"]}", Encoding.UTF8.GetString(requests[0].Data.Span));
    }

    [Fact]
    public void Parse_StringRef_IsKeptWithQuotes()
    {
        var (_, requests) = Parse("""{"type":"ping","ref":"abc"}""");
        Assert.Equal("\"abc\"", Encoding.UTF8.GetString(requests[0].Ref!));
    }

    [Fact]
    public void Parse_PublishWithTraceparent_KeepsItAsSent()
    {
        var (error, requests) = Parse("""{"type":"publish","channel":"c","data":1,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}""");
        Assert.Null(error);
        Assert.Null(requests[0].Error);
        Assert.Equal("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", requests[0].TraceParent);
    }

    [Theory]
    [InlineData("42")]
    [InlineData("{\"version\":\"00\"}")]
    [InlineData("null")]
    public void Parse_TraceparentNotAString_IsIgnoredLikeAnUnknownField(string value)
    {
        var (error, requests) = Parse($$"""{"type":"publish","channel":"c","data":1,"traceparent":{{value}}}""");
        Assert.Null(error);
        Assert.Null(requests[0].Error);
        Assert.Null(requests[0].TraceParent);
        Assert.Equal("1", Encoding.UTF8.GetString(requests[0].Data.Span));
    }

    [Fact]
    public void Parse_Array_GivesOneRequestPerElement()
    {
        var (error, requests) = Parse("""[{"type":"ping","ref":1},{"type":"subscribe","channel":"a","since":{"epoch":"e","seq":4}},{"type":"history","channel":"h","limit":5,"before":9}]""");
        Assert.Null(error);
        Assert.Equal(3, requests.Count);
        Assert.Equal(RequestType.Subscribe, requests[1].Type);
        Assert.Equal("e", requests[1].SinceEpoch);
        Assert.Equal(4, requests[1].SinceSeq);
        Assert.Equal(5, requests[2].Limit);
        Assert.Equal(9, requests[2].Before);
    }

    [Fact]
    public void Parse_EscapedPropertyNames_AreUnderstood()
    {
        var (_, requests) = Parse("""{"\u0074ype":"ping","r\u0065f":2}""");
        Assert.Equal(RequestType.Ping, requests[0].Type);
        Assert.Equal("2", Encoding.UTF8.GetString(requests[0].Ref!));
    }

    [Theory]
    [InlineData("{")]
    [InlineData("")]
    [InlineData("nul")]
    [InlineData("5")]
    [InlineData("{} {}")]
    public void Parse_NotAFrame_GivesFrameError(string frame)
    {
        var (error, requests) = Parse(frame);
        Assert.NotNull(error);
        Assert.Equal(ErrorCodes.BadRequest, error.Code);
        Assert.Empty(requests);
    }

    [Theory]
    [InlineData("""{"ref":1}""", "missing field 'type'")]
    [InlineData("""{"type":"fly","ref":1}""", "unknown type")]
    [InlineData("""{"type":"publish","ref":1,"channel":1}""", "'channel' must be a string")]
    [InlineData("""{"type":"publish","ref":1,"id":""}""", "'id' must be")]
    [InlineData("""{"type":"history","ref":1,"limit":-1}""", "'limit' must be")]
    [InlineData("""{"type":"history","ref":1,"limit":1.5}""", "'limit' must be")]
    [InlineData("""{"type":"subscribe","ref":1,"since":{"epoch":"e"}}""", "needs both")]
    [InlineData("""{"type":"subscribe","ref":1,"since":5}""", "'since' must be an object")]
    public void Parse_BadRequest_KeepsRefAndExplains(string frame, string expected)
    {
        var (error, requests) = Parse(frame);
        Assert.Null(error);
        var request = Assert.Single(requests);
        Assert.NotNull(request.Error);
        Assert.Equal(ErrorCodes.BadRequest, request.Error.Code);
        Assert.Contains(expected, request.Error.Message, StringComparison.Ordinal);
        Assert.Equal("1", Encoding.UTF8.GetString(request.Ref!));
    }

    [Fact]
    public void Parse_IdOf65Chars_IsRefused()
    {
        var (_, requests) = Parse($$"""{"type":"publish","id":"{{new string('i', 65)}}"}""");
        Assert.NotNull(requests[0].Error);
    }

    [Fact]
    public void Parse_TooManyBatched_IsRefused()
    {
        var frame = "[" + string.Join(",", Enumerable.Repeat("""{"type":"ping"}""", ClientFrameParser.MaxBatch + 1)) + "]";
        var (error, requests) = Parse(frame);
        Assert.NotNull(error);
        Assert.Empty(requests);
    }

    [Fact]
    public void Parse_InvalidUtf8_IsRefused()
    {
        var requests = new List<ClientRequest>();
        byte[] frame = [.. "{\"type\":\"publish\",\"data\":\""u8, 0xFF, .. "\"}"u8];
        var error = ClientFrameParser.Parse(frame, requests);
        Assert.NotNull(error);
        Assert.Contains("UTF-8", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_DeeplyNestedData_IsRefusedNotCrashing()
    {
        var frame = """{"type":"publish","data":""" + new string('[', 5000) + new string(']', 5000) + "}";
        var (error, _) = Parse(frame);
        Assert.NotNull(error);
    }
}
