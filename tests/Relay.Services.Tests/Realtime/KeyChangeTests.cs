using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// Keys from configuration change without a restart (the standalone host): connections opened with a key that was
/// removed or whose secret changed are disconnected, and narrowed capabilities drop what they no longer allow.
/// </summary>
public sealed class KeyChangeTests : IAsyncLifetime
{
    /// <summary>The node checks keys once a second; a busy machine gets a wide margin.</summary>
    internal static readonly TimeSpan Within = TimeSpan.FromSeconds(15);

    private static readonly KeyFile.Key First = new("first", "first-secret-0123456789", "*");
    private static readonly KeyFile.Key Second = new("second", "second-secret-0123456789", "*");

    private readonly KeyFile _file = new();
    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        _file.Write(First, Second);
        _server = await RelayServer.StartAsync(ServerFixture.Settings(), sources: _file.AddTo);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _file.Dispose();
    }

    [Fact]
    public async Task KeyRemoved_DisconnectsItsKeyAndTokenConnectionsWith40102()
    {
        await using var byKey = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(First.Credentials, "k"));
        await using var byHs256 = await TestSocket.ConnectAsync(TokenUri(Hs256(First)));
        await using var byRelayToken = await TestSocket.ConnectAsync(TokenUri(await RelayTokenAsync(_server, First)));
        await using var stream = await OpenStreamAsync(_server, First, "chat:a");
        await using var other = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(Second.Credentials));

        _file.Rewrite(_server, Second);

        foreach (var socket in new[] { byKey, byHs256, byRelayToken })
        {
            await AssertDisconnectedAsync(socket, 40102);
        }

        var end = await stream.ReadEventAsync("disconnect", Within);
        Assert.Equal(40102, end.Json.GetProperty("code").GetInt32());
        Assert.False(end.Json.GetProperty("reconnect").GetBoolean());
        Assert.Equal("pong", (await other.RequestAsync(new() { ["type"] = "ping" })).GetProperty("type").GetString());
        Assert.Equal(HttpStatusCode.Unauthorized, await TestSocket.RefusedUpgradeAsync(_server.RealtimeUriWithKey(First.Credentials)));
    }

    [Fact]
    public async Task SecretChanged_DisconnectsKeyAndHs256Connections_RelayTokensStay()
    {
        await using var byKey = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(First.Credentials));
        await using var byHs256 = await TestSocket.ConnectAsync(TokenUri(Hs256(First)));
        await using var byRelayToken = await TestSocket.ConnectAsync(TokenUri(await RelayTokenAsync(_server, First)));
        await using var stream = await OpenStreamAsync(_server, First, "chat:a");

        var rotated = First with { Secret = "first-rotated-secret-0123456789" };
        _file.Rewrite(_server, rotated, Second);

        await AssertDisconnectedAsync(byKey, 40102);
        await AssertDisconnectedAsync(byHs256, 40102);
        Assert.Equal(40102, (await stream.ReadEventAsync("disconnect", Within)).Json.GetProperty("code").GetInt32());

        // Relay's own token never rested on the secret (its signature is Relay's): it stays, past another sweep.
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        Assert.Equal("pong", (await byRelayToken.RequestAsync(new() { ["type"] = "ping" })).GetProperty("type").GetString());
        await using var again = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(rotated.Credentials));
    }

    [Fact]
    public async Task CapabilitiesNarrowed_DropWhatTheyNoLongerAllow()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(First.Credentials, "nora"));
        await using var byToken = await TestSocket.ConnectAsync(TokenUri(Hs256(First)));
        foreach (var channel in new[] { "chat:a", "news:b", "news:b/#" })
        {
            Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel })).GetProperty("type").GetString());
        }

        Assert.Equal("ok", (await byToken.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "news:b" })).GetProperty("type").GetString());
        Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "presence", ["channel"] = "news:b", ["action"] = "enter" })).GetProperty("type").GetString());
        await using var newsStream = await OpenStreamAsync(_server, First, "news:b");
        await using var chatStream = await OpenStreamAsync(_server, First, "chat:a");

        _file.Rewrite(_server, First with { Channels = ["chat:*"] }, Second);

        var drops = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var drop = await socket.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "error", Within);
            Assert.Equal(40300, drop.GetProperty("code").GetInt32());
            drops.Add(drop.GetProperty("channel").GetString()!);
        }

        Assert.Equal(["news:b", "news:b", "news:b/#"], drops.Order(StringComparer.Ordinal));
        Assert.Equal("news:b", (await byToken.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "error", Within)).GetProperty("channel").GetString());
        var end = await newsStream.ReadEventAsync("disconnect", Within);
        Assert.Equal(40300, end.Json.GetProperty("code").GetInt32());

        await PublishAsync("news:b");
        await PublishAsync("chat:a");
        Assert.Equal("chat:a", (await socket.ReceiveMessageAsync()).GetProperty("channel").GetString());
        Assert.Equal("chat:a", (await chatStream.ReadEventAsync("message")).Json.GetProperty("channel").GetString());
    }

    [Fact]
    public async Task InvalidChange_IsIgnoredAndTheKeysInUseStay()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(First.Credentials));

        // A secret under 16 characters fails validation, as it would at start.
        _file.Rewrite(_server, First with { Secret = "short" });

        await Task.Delay(TimeSpan.FromSeconds(1.5));
        Assert.Equal("pong", (await socket.RequestAsync(new() { ["type"] = "ping" })).GetProperty("type").GetString());
        await using var again = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(First.Credentials));
        Assert.Equal(HttpStatusCode.Unauthorized, await TestSocket.RefusedUpgradeAsync(_server.RealtimeUriWithKey($"{KeyFile.App}.{First.Id}:short")));
    }

    internal static async Task AssertDisconnectedAsync(TestSocket socket, int code)
    {
        var frame = await socket.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "disconnect", Within);
        Assert.Equal(code, frame.GetProperty("code").GetInt32());
        Assert.False(frame.GetProperty("reconnect").GetBoolean());
        await socket.DrainUntilClosedAsync();
    }

    internal static async Task<SseTestClient> OpenStreamAsync(RelayServer server, KeyFile.Key key, string channel)
    {
        var stream = await SseTestClient.OpenAsync(new Uri(server.BaseAddress, $"v1/sse?key={Uri.EscapeDataString(key.Credentials)}&channel={Uri.EscapeDataString(channel)}"));
        Assert.Equal(HttpStatusCode.OK, stream.Status);
        await stream.ReadAsync(); // the opening comment: subscribed
        return stream;
    }

    internal static async Task<string> RelayTokenAsync(RelayServer server, KeyFile.Key key)
    {
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/tokens") { Content = new StringContent("""{"clientId":"relay-token"}""", Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(key.Credentials)));
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return body.RootElement.GetProperty("token").GetString()!;
    }

    private static string Hs256(KeyFile.Key key) => TestTokens.Hs256($"{KeyFile.App}.{key.Id}", key.Secret, new()
    {
        ["app"] = KeyFile.App,
        ["sub"] = "hs",
        ["exp"] = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeSeconds(),
        ["cap"] = new Dictionary<string, string[]> { ["*"] = ["subscribe", "publish", "presence", "history"] },
    });

    private Uri TokenUri(string token) => new($"{_server.RealtimeUri}?token={token}");

    private async Task PublishAsync(string channel)
    {
        using var http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(Second.Credentials)));
        using var response = await http.PostAsync($"v1/channels/{Uri.EscapeDataString(channel)}/messages", new StringContent("""{"data":{}}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
    }
}
