using System.Net;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

public abstract class ConnectSpec(IServerFixture fixture)
{
    private readonly RelayServer _server = fixture.Server;

    [Fact]
    public async Task Connect_WithKeyAndClientId_SendsConnectedFrame()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "alice"));
        var connected = socket.Connected;
        Assert.StartsWith("c-", connected.GetProperty("connectionId").GetString());
        Assert.Equal("alice", connected.GetProperty("clientId").GetString());
        Assert.Equal(15000, connected.GetProperty("heartbeatMs").GetInt32());
        Assert.Equal(4096, connected.GetProperty("maxMessageBytes").GetInt32());
    }

    [Fact]
    public async Task Connect_AskingForSubprotocol_IsAcceptedWithIt()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key), "relay.v1.json");
        Assert.Equal("relay.v1.json", socket.Socket.SubProtocol);
    }

    [Fact]
    public async Task Connect_WithBasicAuthHeader_Works()
    {
        var basic = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(RelayServer.Key));
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUri, options: o => o.SetRequestHeader("Authorization", "Basic " + basic));
        Assert.Equal("connected", socket.Connected.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Connect_WithToken_UsesTokenClientId()
    {
        var token = TestTokens.ForRootKey("bob", TimeSpan.FromMinutes(5));
        await using var socket = await TestSocket.ConnectAsync(new Uri($"{_server.RealtimeUri}?token={token}"));
        Assert.Equal("bob", socket.Connected.GetProperty("clientId").GetString());
    }

    [Theory]
    [InlineData("", HttpStatusCode.Unauthorized, 40101)]
    [InlineData("?key=test.root:wrong-secret-0000000000", HttpStatusCode.Unauthorized, 40102)]
    [InlineData("?key=nosuchapp.root:whatever-secret-000000", HttpStatusCode.Unauthorized, 40102)]
    [InlineData("?token=not.a.jwt", HttpStatusCode.Unauthorized, 40102)]
    public async Task Connect_WithBadCredentials_IsRefusedAtUpgradeWithErrorBody(string query, HttpStatusCode status, int code)
    {
        var uri = new Uri(_server.RealtimeUri + query);
        Assert.Equal(status, await TestSocket.RefusedUpgradeAsync(uri));

        using var http = new HttpClient();
        using var response = await http.GetAsync(new Uri(_server.BaseAddress, "v1/realtime" + query)).WaitAsync(TestSocket.DefaultTimeout);
        Assert.Equal(status, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(code, body.RootElement.GetProperty("error").GetProperty("code").GetInt32());
        Assert.Equal((int)status, body.RootElement.GetProperty("error").GetProperty("statusCode").GetInt32());
    }

    [Fact]
    public async Task Connect_WithExpiredToken_IsRefusedWith40142()
    {
        var token = TestTokens.ForRootKey("bob", TimeSpan.FromMinutes(-1));
        Assert.Equal(HttpStatusCode.Unauthorized, await TestSocket.RefusedUpgradeAsync(new Uri($"{_server.RealtimeUri}?token={token}")));
        using var http = new HttpClient();
        using var response = await http.GetAsync(new Uri(_server.BaseAddress, "v1/realtime?token=" + token)).WaitAsync(TestSocket.DefaultTimeout);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(40142, body.RootElement.GetProperty("error").GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task TokenExpiry_WithoutRenewal_SendsDisconnect40142()
    {
        // Four seconds (exp is whole seconds, so at least three): a busy machine once took over a second to connect,
        // and a two-second token was refused at the upgrade.
        var token = TestTokens.ForRootKey("carol", TimeSpan.FromSeconds(4));
        await using var socket = await TestSocket.ConnectAsync(new Uri($"{_server.RealtimeUri}?token={token}"));
        var frame = await socket.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "disconnect", TimeSpan.FromSeconds(10));
        Assert.Equal(40142, frame.GetProperty("code").GetInt32());
        Assert.True(frame.GetProperty("reconnect").GetBoolean());
        await socket.DrainUntilClosedAsync();
    }

    [Fact]
    public async Task TokenExpiry_AfterInBandRenewal_KeepsConnection()
    {
        var token = TestTokens.ForRootKey("dave", TimeSpan.FromSeconds(4));
        await using var socket = await TestSocket.ConnectAsync(new Uri($"{_server.RealtimeUri}?token={token}"));
        var renewed = TestTokens.ForRootKey("dave", TimeSpan.FromMinutes(10));
        var ok = await socket.RequestAsync(new() { ["type"] = "auth", ["token"] = renewed });
        Assert.Equal("ok", ok.GetProperty("type").GetString());
        Assert.True(ok.GetProperty("expiresAt").GetInt64() > DateTimeOffset.UtcNow.AddMinutes(9).ToUnixTimeMilliseconds());

        // Past the first token's expiry (at most 4 s after it was made) and the node's once-a-second check.
        await Task.Delay(TimeSpan.FromSeconds(5.5));
        var pong = await socket.RequestAsync(new() { ["type"] = "ping" });
        Assert.Equal("pong", pong.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Auth_WithTokenOfAnotherClientId_IsRefused40102()
    {
        var token = TestTokens.ForRootKey("erin", TimeSpan.FromMinutes(5));
        await using var socket = await TestSocket.ConnectAsync(new Uri($"{_server.RealtimeUri}?token={token}"));
        var reply = await socket.RequestAsync(new() { ["type"] = "auth", ["token"] = TestTokens.ForRootKey("mallory", TimeSpan.FromMinutes(5)) });
        Assert.Equal("error", reply.GetProperty("type").GetString());
        Assert.Equal(40102, reply.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Auth_WithExpiredToken_IsRefused40142()
    {
        await using var socket = await TestSocket.ConnectAsync(new Uri($"{_server.RealtimeUri}?token={TestTokens.ForRootKey("frank", TimeSpan.FromMinutes(5))}"));
        var reply = await socket.RequestAsync(new() { ["type"] = "auth", ["token"] = TestTokens.ForRootKey("frank", TimeSpan.FromMinutes(-1)) });
        Assert.Equal(40142, reply.GetProperty("code").GetInt32());
    }
}
