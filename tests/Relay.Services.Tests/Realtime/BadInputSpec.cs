using System.Net.WebSockets;
using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>Every bad frame gets the protocol's error and the connection keeps working.</summary>
public abstract class BadInputSpec(IServerFixture fixture)
{
    private readonly RelayServer _server = fixture.Server;

    private static async Task AssertStillWorksAsync(TestSocket socket)
    {
        var pong = await socket.RequestAsync(new() { ["type"] = "ping" });
        Assert.Equal("pong", pong.GetProperty("type").GetString());
    }

    private static async Task<JsonElement> ErrorAsync(TestSocket socket, string frame)
    {
        await socket.SendTextAsync(frame);
        var reply = await socket.ReceiveAsync();
        Assert.True(reply.GetProperty("type").GetString() == "error", "expected error, got " + reply.GetRawText());
        Assert.False(string.IsNullOrWhiteSpace(reply.GetProperty("message").GetString()));
        return reply;
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("")]
    [InlineData("42")]
    [InlineData("\"text\"")]
    [InlineData("{\"type\":\"ping\"} trailing")]
    [InlineData("[1,2]")]
    [InlineData("{\"ref\":1}")]
    [InlineData("{\"type\":\"launch\",\"ref\":1}")]
    [InlineData("{\"type\":7,\"ref\":1}")]
    [InlineData("{\"type\":\"publish\",\"ref\":1,\"data\":1}")]
    [InlineData("{\"type\":\"publish\",\"ref\":1,\"channel\":\"a\"}")]
    [InlineData("{\"type\":\"publish\",\"ref\":1,\"channel\":5,\"data\":1}")]
    [InlineData("{\"type\":\"publish\",\"ref\":{},\"channel\":\"a\",\"data\":1}")]
    [InlineData("{\"type\":\"subscribe\",\"ref\":1,\"channel\":\"a\",\"since\":{\"seq\":1}}")]
    [InlineData("{\"type\":\"subscribe\",\"ref\":1,\"channel\":\"a/+\",\"rewind\":3}")]
    [InlineData("{\"type\":\"history\",\"ref\":1,\"channel\":\"a\",\"limit\":1001}")]
    [InlineData("{\"type\":\"history\",\"ref\":1,\"channel\":\"a\",\"limit\":0}")]
    [InlineData("{\"type\":\"auth\",\"ref\":1}")]
    public async Task BadRequest_GetsError40000_AndConnectionSurvives(string frame)
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        var error = await ErrorAsync(socket, frame);
        Assert.Equal(40000, error.GetProperty("code").GetInt32());
        if (frame.Contains("\"ref\":1", StringComparison.Ordinal))
        {
            Assert.Equal(1, error.GetProperty("ref").GetInt32());
        }

        await AssertStillWorksAsync(socket);
    }

    [Theory]
    [InlineData("publish", "a//b")]
    [InlineData("publish", "a/+")]
    [InlineData("publish", "a*")]
    [InlineData("publish", "")]
    [InlineData("publish", "/lead")]
    [InlineData("publish", "tab\there")]
    [InlineData("subscribe", "a/#/b")]
    [InlineData("subscribe", "a+/b")]
    [InlineData("subscribe", "*")]
    [InlineData("history", "x/#")]
    public async Task InvalidChannel_GetsError40002(string type, string channel)
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        var error = await ErrorAsync(socket, JsonSerializer.Serialize(new { type, @ref = 3, channel, data = 1 }));
        Assert.Equal(40002, error.GetProperty("code").GetInt32());
        Assert.Equal(3, error.GetProperty("ref").GetInt32());
        await AssertStillWorksAsync(socket);
    }

    [Fact]
    public async Task InvalidChannel_Of256Bytes_GetsError40002()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        var error = await ErrorAsync(socket, JsonSerializer.Serialize(new { type = "publish", channel = new string('é', 128), data = 1 }));
        Assert.Equal(40002, error.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task OversizedMessage_GetsError41300_AndConnectionSurvives()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        var error = await ErrorAsync(socket, JsonSerializer.Serialize(new { type = "publish", @ref = 9, channel = "big", data = new string('x', 5000) }));
        Assert.Equal(41300, error.GetProperty("code").GetInt32());
        Assert.Equal(9, error.GetProperty("ref").GetInt32());
        await AssertStillWorksAsync(socket);
    }

    [Fact]
    public async Task OversizedFrame_GetsError41300_AndConnectionSurvives()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        var error = await ErrorAsync(socket, JsonSerializer.Serialize(new { type = "publish", channel = "big", data = new string('x', 200_000) }));
        Assert.Equal(41300, error.GetProperty("code").GetInt32());
        await AssertStillWorksAsync(socket);
    }

    [Fact]
    public async Task InvalidUtf8_GetsError40000_AndConnectionSurvives()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        byte[] frame = [.. "{\"type\":\"publish\",\"channel\":\"u\",\"data\":\""u8, 0xC3, 0x28, .. "\"}"u8];
        await socket.SendBytesAsync(frame, WebSocketMessageType.Binary);
        var error = await socket.ReceiveAsync();
        Assert.Equal(40000, error.GetProperty("code").GetInt32());
        await AssertStillWorksAsync(socket);
    }

    [Theory]
    [InlineData(RelayServer.SubscribeOnlyKey, "publish", "news")]
    [InlineData(RelayServer.ChatOnlyKey, "subscribe", "news")]
    [InlineData(RelayServer.ChatOnlyKey, "publish", "news")]
    [InlineData(RelayServer.ChatOnlyKey, "history", "news")]
    [InlineData(RelayServer.ChatOnlyKey, "subscribe", "#")]
    public async Task CapabilityDenied_GetsError40300(string key, string type, string channel)
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(key));
        var error = await ErrorAsync(socket, JsonSerializer.Serialize(new { type, @ref = "r", channel, data = 1 }));
        Assert.Equal(40300, error.GetProperty("code").GetInt32());
        Assert.Equal("r", error.GetProperty("ref").GetString());
        await AssertStillWorksAsync(socket);
    }

    [Fact]
    public async Task CapabilityAllowed_ForChatGlob_Works()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.ChatOnlyKey));
        var reply = await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = "chat:room", ["data"] = 1 });
        Assert.Equal("ok", reply.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Flood_OfBadFrames_DoesNotBreakTheServerOrOtherClients()
    {
        await using var victim = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await using var attacker = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await victim.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "calm" });
        for (var i = 0; i < 200; i++)
        {
            await attacker.SendTextAsync(i % 2 == 0 ? "{{{{" : "[{\"type\":\"x\"}]");
        }

        await using var publisher = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "calm", ["data"] = "still here" });
        Assert.Equal("still here", (await victim.ReceiveMessageAsync()).GetProperty("data").GetString());
    }

    private static readonly string[] FuzzKeys = ["type", "channel", "data", "name", "id", "action", "token", "rewind", "limit", "before", "since", "epoch", "seq", "x"];

    private static readonly string[] FuzzScalars =
    [
        "null", "true", "false", "0", "-1", "1.5", "1e3", "\"\"", "\"ping\"", "\"publish\"", "\"subscribe\"", "\"unsubscribe\"",
        "\"history\"", "\"presence\"", "\"auth\"", "\"enter\"", "\"get\"", "\"fz:a\"", "\"a//b\"", "\"x\\n\\\"y\"",
    ];

    private static Gen<string> FuzzValue(int depth) => depth == 0
        ? Gen.Elements(FuzzScalars)
        : Gen.Frequency(
            (3, Gen.Elements(FuzzScalars)),
            (1, Gen.Choose(0, 3).SelectMany(n => Gen.ArrayOf(FuzzValue(depth - 1), n)).Select(static items => "[" + string.Join(",", items) + "]")),
            (1, Gen.Choose(0, 3).SelectMany(n => Gen.ArrayOf(Gen.Elements(FuzzKeys).SelectMany(_ => FuzzValue(depth - 1), static (k, v) => $"\"{k}\":{v}"), n))
                .Select(static fields => "{" + string.Join(",", fields) + "}")));

    /// <summary>A request object; "REF" stands for a readable ref (made unique when sent), the other ref values are not readable.</summary>
    private static Gen<string> FuzzRequest() =>
        from keys in Gen.SubListOf(FuzzKeys)
        from values in Gen.ArrayOf(FuzzValue(2), keys.Count)
        from type in Gen.Frequency((2, Gen.Elements("\"ping\"", "\"publish\"", "\"subscribe\"", "\"history\"", "\"nope\"")), (3, FuzzValue(2)))
        from reference in Gen.Frequency((3, Gen.Constant("REF")), (1, FuzzValue(2).Where(static v => v[0] is '{' or '[' or 'n' or 't' or 'f')), (1, Gen.Constant("")))
        select "{" + string.Join(",", keys.Select((k, i) => k == "type" ? $"\"type\":{type}" : $"\"{k}\":{values[i]}")
            .Concat(reference.Length == 0 ? [] : [$"\"ref\":{reference}"])) + "}";

    /// <summary>One request object sent on its own, or a batch of requests and other values (each answered on its own).</summary>
    private static Gen<(bool Batch, string[] Elements)> FuzzFrame() => Gen.Frequency(
        (1, FuzzRequest().Select(static r => (false, new[] { r }))),
        (2, Gen.Choose(1, 6).SelectMany(n => Gen.ArrayOf(Gen.Frequency((4, FuzzRequest()), (1, FuzzValue(2).Where(static v => !v.StartsWith('{')))), n))
            .Select(static elements => (true, elements))));

    [Fact]
    public async Task RandomShapedRequests_GetExactlyOneReplyEach_WithTheirReadableRef()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "fuzzer"));
        var sent = 0;
        var property = Prop.ForAll(FuzzFrame().ToArbitrary(), generated =>
        {
            var (batch, elements) = generated;
            // Readable refs are numbered or named uniquely, so every reply is matched to its request.
            var expected = new List<string?>();
            var parts = elements.Select(element =>
            {
                if (!element.StartsWith('{'))
                {
                    expected.Add(null);
                    return element;
                }

                var n = Interlocked.Increment(ref sent);
                var readable = n % 2 == 0 ? n.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"\"r{n}\"";
                expected.Add(element.Contains("\"ref\":REF", StringComparison.Ordinal) ? readable : null);
                return element.Replace("\"ref\":REF", "\"ref\":" + readable, StringComparison.Ordinal);
            }).ToArray();
            var frame = batch ? "[" + string.Join(",", parts) + "]" : parts[0];
            var replies = ExchangeAsync(socket, frame).GetAwaiter().GetResult();
            var got = replies.Select(static r => r.TryGetProperty("ref", out var value) ? value.GetRawText() : null).Order().ToList();
            Assert.True(got.SequenceEqual(expected.Order()), $"sent {frame}\nexpected refs [{string.Join(", ", expected.Order())}]\ngot {string.Join(" ", replies.Select(static r => r.GetRawText()))}");
        });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(150), property);
        await AssertStillWorksAsync(socket);
    }

    /// <summary>Sends a frame, then a ping marking its end: the replies (not pushes) that came before the ping's pong.</summary>
    private static async Task<List<JsonElement>> ExchangeAsync(TestSocket socket, string frame)
    {
        var marker = "end-" + socket.NextRef();
        await socket.SendTextAsync(frame);
        await socket.SendTextAsync($$"""{"type":"ping","ref":"{{marker}}"}""");
        var replies = new List<JsonElement>();
        for (var i = 0; i < 1000; i++)
        {
            var next = await socket.ReceiveAsync();
            var type = next.GetProperty("type").GetString();
            if (type == "pong" && next.TryGetProperty("ref", out var r) && r.ValueKind == JsonValueKind.String && r.GetString() == marker)
            {
                return replies;
            }

            Assert.NotEqual("disconnect", type);
            if (type is not ("message" or "presence"))
            {
                replies.Add(next);
            }
        }

        throw new InvalidOperationException("no end marker after 1000 frames");
    }
}
