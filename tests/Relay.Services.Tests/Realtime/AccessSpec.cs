using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>What credentials allow, over real sockets: patterns, in-band renewal, <c>rewind</c>, and what a refusal says.</summary>
public abstract class AccessSpec(IServerFixture fixture)
{
    private readonly RelayServer _server = fixture.Server;

    private static string Unique(string prefix) => prefix + Guid.NewGuid().ToString("N")[..8];

    private static Dictionary<string, string[]> Caps(params (string Glob, string[] Operations)[] entries) =>
        entries.ToDictionary(static e => e.Glob, static e => e.Operations);

    private Uri TokenUri(string token) => new($"{_server.RealtimeUri}?token={token}");

    private async Task PublishAsync(string channel, object data)
    {
        using var http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var response = await http.PostAsync($"v1/channels/{Uri.EscapeDataString(channel)}/messages", new StringContent(JsonSerializer.Serialize(new { data }), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
    }

    private static bool IsMessageOn(JsonElement frame, string channel) =>
        frame.GetProperty("type").GetString() == "message" && frame.GetProperty("channel").GetString() == channel;

    private static bool IsDrop(JsonElement frame, string channel) =>
        frame.GetProperty("type").GetString() == "error" && frame.TryGetProperty("channel", out var c) && c.GetString() == channel;

    [Fact]
    public async Task Subscribe_HashPatternWhoseParentIsNotAllowed_Is40300()
    {
        // A key limited to sport/* must not reach the channel 'sport' through 'sport/#' ('#' matches the parent level).
        var sport = Unique("sport");
        var token = TestTokens.ForRootKey("pat", TimeSpan.FromMinutes(5), Caps(($"{sport}/*", ["subscribe"])));
        await using var socket = await TestSocket.ConnectAsync(TokenUri(token));

        var parent = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = sport });
        var hash = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = $"{sport}/#" });
        var everything = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "#" });
        var plus = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = $"{sport}/+" });

        Assert.Equal(40300, parent.GetProperty("code").GetInt32());
        Assert.Equal(40300, hash.GetProperty("code").GetInt32());
        Assert.Equal(40300, everything.GetProperty("code").GetInt32());
        Assert.Equal("ok", plus.GetProperty("type").GetString());

        // Only sport/x arrives: 'sport' is published first, so it would have come before it.
        await PublishAsync(sport, new { n = 1 });
        await PublishAsync($"{sport}/x", new { n = 2 });
        var message = await socket.ReceiveMessageAsync();
        Assert.Equal($"{sport}/x", message.GetProperty("channel").GetString());
    }

    [Fact]
    public async Task Sse_HashPatternWhoseParentIsNotAllowed_Is403()
    {
        var sport = Unique("sport");
        var token = TestTokens.ForRootKey("pat", TimeSpan.FromMinutes(5), Caps(($"{sport}/*", ["subscribe"])));

        await using var refused = await SseTestClient.OpenAsync(new Uri(_server.BaseAddress, $"v1/sse?token={token}&channel={sport}/%23"));
        Assert.Equal(HttpStatusCode.Forbidden, refused.Status);
        using var body = JsonDocument.Parse(await refused.ReadBodyAsync());
        Assert.Equal(40300, body.RootElement.GetProperty("error").GetProperty("code").GetInt32());

        await using var allowed = await SseTestClient.OpenAsync(new Uri(_server.BaseAddress, $"v1/sse?token={token}&channel={sport}/%2B"));
        Assert.Equal(HttpStatusCode.OK, allowed.Status);
    }

    [Fact]
    public async Task Auth_WithNarrowerToken_DropsSubscriptionsAndPresenceItNoLongerAllows()
    {
        var open = Unique("chat:public-");
        var secret = Unique("chat:secret-");
        var wide = TestTokens.ForRootKey("alice", TimeSpan.FromMinutes(5), Caps(("chat:*", ["subscribe", "presence"])));
        var narrow = TestTokens.ForRootKey("alice", TimeSpan.FromMinutes(5), Caps((open, ["subscribe", "presence"])));
        await using var watcher = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "watcher"));
        await using var alice = await TestSocket.ConnectAsync(TokenUri(wide));
        Assert.Equal("ok", (await watcher.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = secret })).GetProperty("type").GetString());
        foreach (var channel in new[] { open, secret, $"{secret}/#" })
        {
            Assert.Equal("ok", (await alice.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel })).GetProperty("type").GetString());
        }

        Assert.Equal("ok", (await alice.RequestAsync(new() { ["type"] = "presence", ["channel"] = secret, ["action"] = "enter" })).GetProperty("type").GetString());
        Assert.Equal("enter", (await watcher.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence")).GetProperty("action").GetString());

        var renewed = await alice.RequestAsync(new() { ["type"] = "auth", ["token"] = narrow });
        Assert.Equal("ok", renewed.GetProperty("type").GetString());

        // Each dropped subscription and presence entry: a 40300 naming the channel, answering no request.
        var drops = new List<JsonElement>();
        for (var i = 0; i < 3; i++)
        {
            drops.Add(await alice.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "error"));
        }

        Assert.All(drops, static d => Assert.Equal(40300, d.GetProperty("code").GetInt32()));
        Assert.All(drops, static d => Assert.False(d.TryGetProperty("ref", out _)));
        Assert.Equal([secret, secret, $"{secret}/#"], drops.Select(static d => d.GetProperty("channel").GetString()).Order(StringComparer.Ordinal));
        Assert.Contains(drops, d => d.GetProperty("message").GetString()!.Contains("'presence'", StringComparison.Ordinal));

        // The watcher sees alice leave, and alice is no longer a member.
        var leave = await watcher.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence");
        Assert.Equal("leave", leave.GetProperty("action").GetString());
        Assert.Equal("alice", leave.GetProperty("clientId").GetString());
        var members = await watcher.RequestAsync(new() { ["type"] = "presence", ["channel"] = secret, ["action"] = "get" });
        Assert.Equal(0, members.GetProperty("members").GetArrayLength());

        // Renewal after renewal: nothing on the secret channel arrives, the open one still does.
        for (var round = 0; round < 2; round++)
        {
            await PublishAsync(secret, new { round });
            await PublishAsync(open, new { round });
            var frame = await alice.ReceiveMatchingAsync(f => IsMessageOn(f, open) || IsMessageOn(f, secret));
            Assert.Equal(open, frame.GetProperty("channel").GetString());
            Assert.Equal("ok", (await alice.RequestAsync(new() { ["type"] = "auth", ["token"] = narrow })).GetProperty("type").GetString());
        }

        // Nothing more was dropped by the renewals that changed nothing.
        var ping = await alice.RequestAsync(new() { ["type"] = "ping" });
        Assert.Equal("pong", ping.GetProperty("type").GetString());
        await Assert.ThrowsAsync<TimeoutException>(() => alice.ReceiveMatchingAsync(f => IsDrop(f, secret) || IsDrop(f, open), TimeSpan.FromMilliseconds(300)));
    }

    [Fact]
    public async Task Publish_AfterAuthNarrowsCapabilities_IsRefusedOnTheChannelItPublishedTo()
    {
        // The connection remembers the channel its last publishes passed their checks on; new capabilities must count.
        var first = Unique("chat:first-");
        var second = Unique("chat:second-");
        var wide = TestTokens.ForRootKey("pia", TimeSpan.FromMinutes(5), Caps(("chat:*", ["publish"])));
        var narrow = TestTokens.ForRootKey("pia", TimeSpan.FromMinutes(5), Caps((second, ["publish"])));
        await using var socket = await TestSocket.ConnectAsync(TokenUri(wide));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = first, ["data"] = i })).GetProperty("type").GetString());
        }

        Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "auth", ["token"] = narrow })).GetProperty("type").GetString());
        var refused = await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = first, ["data"] = 3 });
        var allowed = await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = second, ["data"] = 4 });
        var refusedAgain = await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = first, ["data"] = 5 });

        Assert.Equal(40300, refused.GetProperty("code").GetInt32());
        Assert.Equal("ok", allowed.GetProperty("type").GetString());
        Assert.Equal(40300, refusedAgain.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Auth_WithWiderToken_KeepsEverySubscription()
    {
        var channel = Unique("chat:keep-");
        var narrow = TestTokens.ForRootKey("bea", TimeSpan.FromMinutes(5), Caps((channel, ["subscribe"])));
        await using var socket = await TestSocket.ConnectAsync(TokenUri(narrow));
        Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel })).GetProperty("type").GetString());

        Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "auth", ["token"] = TestTokens.ForRootKey("bea", TimeSpan.FromMinutes(5)) })).GetProperty("type").GetString());

        await PublishAsync(channel, new { n = 1 });
        var message = await socket.ReceiveMessageAsync();
        Assert.Equal(channel, message.GetProperty("channel").GetString());
    }

    [Fact]
    public async Task Subscribe_WithRewindWithoutHistoryCapability_Is40300ButSinceWorks()
    {
        var channel = Unique("rw");
        await PublishAsync(channel, new { n = 1 });
        await PublishAsync(channel, new { n = 2 });
        var subscribeOnly = TestTokens.ForRootKey("rw", TimeSpan.FromMinutes(5), Caps((channel, ["subscribe"])));
        await using var socket = await TestSocket.ConnectAsync(TokenUri(subscribeOnly));

        var rewind = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel, ["rewind"] = 5 });
        Assert.Equal(40300, rewind.GetProperty("code").GetInt32());
        Assert.Contains("'history'", rewind.GetProperty("message").GetString(), StringComparison.Ordinal);

        // 'since' recovers what this client's own subscription missed: subscribe is enough.
        var plain = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
        var epoch = plain.GetProperty("epoch").GetString();
        var since = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel, ["since"] = new Dictionary<string, object?> { ["epoch"] = epoch, ["seq"] = 1 } });
        Assert.True(since.GetProperty("recovered").GetBoolean());
        Assert.Equal(2, (await socket.ReceiveMessageAsync()).GetProperty("seq").GetInt64());

        // With history as well, rewind replays.
        await using var reader = await TestSocket.ConnectAsync(TokenUri(TestTokens.ForRootKey("rw", TimeSpan.FromMinutes(5), Caps((channel, ["subscribe", "history"])))));
        var replay = await reader.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel, ["rewind"] = 5 });
        Assert.Equal("ok", replay.GetProperty("type").GetString());
        Assert.Equal(1, (await reader.ReceiveMessageAsync()).GetProperty("seq").GetInt64());
    }

    [Fact]
    public async Task BadCredentials_UnknownAppUnknownKeyOrWrongSecret_AllGetOneMessage()
    {
        // Whether an app or a key exists must not show in the answer, wherever credentials are checked.
        string[] keys = ["nosuchapp.root:some-secret-0123456789", "test.nosuchkey:some-secret-0123456789", "test.root:wrong-secret-0123456789"];
        var kidTokens = new[] { "nosuchapp.root", "test.nosuchkey", "test.root" }
            .Select(kid => TestTokens.Hs256(kid, "wrong-secret-0123456789", new() { ["app"] = kid.Split('.')[0], ["exp"] = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds(), ["cap"] = Caps(("*", ["subscribe"])) }));
        var messages = new HashSet<string>(StringComparer.Ordinal);
        using var http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        foreach (var key in keys)
        {
            var basic = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(key)));
            messages.Add(await ErrorMessageAsync(http, HttpMethod.Get, $"v1/realtime?key={Uri.EscapeDataString(key)}", null));
            messages.Add(await ErrorMessageAsync(http, HttpMethod.Get, "v1/channels", basic));
            messages.Add(await ErrorMessageAsync(http, HttpMethod.Get, $"v1/sse?channel=a&key={Uri.EscapeDataString(key)}", null));
            messages.Add(await ErrorMessageAsync(http, HttpMethod.Post, "v1/tokens", basic));
        }

        foreach (var token in kidTokens)
        {
            messages.Add(await ErrorMessageAsync(http, HttpMethod.Get, $"v1/realtime?token={token}", null));
            messages.Add(await ErrorMessageAsync(http, HttpMethod.Get, "v1/channels", new AuthenticationHeaderValue("Bearer", token)));
        }

        Assert.Equal(["invalid key or token"], messages);
    }

    private static async Task<string> ErrorMessageAsync(HttpClient http, HttpMethod method, string path, AuthenticationHeaderValue? authorization)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = authorization;
        if (method == HttpMethod.Post)
        {
            request.Content = new StringContent("{}", Encoding.UTF8, "application/json");
        }

        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var error = body.RootElement.GetProperty("error");
        Assert.Equal(40102, error.GetProperty("code").GetInt32());
        return error.GetProperty("message").GetString()!;
    }
}
