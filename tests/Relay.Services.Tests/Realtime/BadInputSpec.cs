using System.Net.WebSockets;
using System.Text.Json;
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
}
