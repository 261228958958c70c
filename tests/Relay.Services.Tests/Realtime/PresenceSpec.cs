using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

public abstract class PresenceSpec(IServerFixture fixture)
{
    private readonly RelayServer _server = fixture.Server;

    private Task<TestSocket> ConnectAsync(string? clientId, string key = RelayServer.Key) =>
        TestSocket.ConnectAsync(_server.RealtimeUriWithKey(key, clientId));

    private static Task<JsonElement> NextPresenceAsync(TestSocket socket) =>
        socket.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence");

    private static async Task<JsonElement> OkAsync(TestSocket socket, Dictionary<string, object?> request)
    {
        var reply = await socket.RequestAsync(request);
        Assert.True(reply.GetProperty("type").GetString() == "ok", "expected ok, got " + reply.GetRawText());
        return reply;
    }

    [Fact]
    public async Task EnterUpdateLeave_AreSeenBySubscribersAndGet()
    {
        await using var watcher = await ConnectAsync("watcher");
        await OkAsync(watcher, new() { ["type"] = "subscribe", ["channel"] = "room:1" });
        await using var alice = await ConnectAsync("alice");
        await OkAsync(alice, new() { ["type"] = "presence", ["channel"] = "room:1", ["action"] = "enter", ["data"] = new { status = "online" } });

        var entered = await NextPresenceAsync(watcher);
        Assert.Equal("enter", entered.GetProperty("action").GetString());
        Assert.Equal("room:1", entered.GetProperty("channel").GetString());
        Assert.Equal("alice", entered.GetProperty("clientId").GetString());
        Assert.Equal(alice.Connected.GetProperty("connectionId").GetString(), entered.GetProperty("connectionId").GetString());
        Assert.Equal("online", entered.GetProperty("data").GetProperty("status").GetString());

        await OkAsync(alice, new() { ["type"] = "presence", ["channel"] = "room:1", ["action"] = "update", ["data"] = new { status = "away" } });
        Assert.Equal("update", (await NextPresenceAsync(watcher)).GetProperty("action").GetString());

        var get = await OkAsync(watcher, new() { ["type"] = "presence", ["channel"] = "room:1", ["action"] = "get" });
        var member = Assert.Single(get.GetProperty("members").EnumerateArray());
        Assert.Equal("alice", member.GetProperty("clientId").GetString());
        Assert.Equal("away", member.GetProperty("data").GetProperty("status").GetString());

        using var http = new HttpClient { BaseAddress = _server.BaseAddress };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var response = await http.GetAsync("v1/channels/room:1/presence").WaitAsync(TestSocket.DefaultTimeout);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("alice", body.RootElement.GetProperty("members")[0].GetProperty("clientId").GetString());

        await OkAsync(alice, new() { ["type"] = "presence", ["channel"] = "room:1", ["action"] = "leave" });
        Assert.Equal("leave", (await NextPresenceAsync(watcher)).GetProperty("action").GetString());
        var after = await OkAsync(watcher, new() { ["type"] = "presence", ["channel"] = "room:1", ["action"] = "get" });
        Assert.Equal(0, after.GetProperty("members").GetArrayLength());
    }

    [Fact]
    public async Task ConnectionDrop_LeavesOnlyWhenTheClientsLastConnectionGoes()
    {
        await using var watcher = await ConnectAsync("watcher");
        await OkAsync(watcher, new() { ["type"] = "subscribe", ["channel"] = "room:2" });
        var phone = await ConnectAsync("bob");
        await using var laptop = await ConnectAsync("bob");
        await OkAsync(phone, new() { ["type"] = "presence", ["channel"] = "room:2", ["action"] = "enter" });
        Assert.Equal("enter", (await NextPresenceAsync(watcher)).GetProperty("action").GetString());
        await OkAsync(laptop, new() { ["type"] = "presence", ["channel"] = "room:2", ["action"] = "enter" });
        Assert.Equal("update", (await NextPresenceAsync(watcher)).GetProperty("action").GetString());

        // The phone drops without leaving: bob is still present through the laptop, so no leave yet.
        phone.Socket.Abort();
        await phone.DisposeAsync();
        var members = await WaitForMembersAsync(watcher, "room:2", 1);
        Assert.Equal(laptop.Connected.GetProperty("connectionId").GetString(), members[0].GetProperty("connectionId").GetString());

        await laptop.Socket.CloseOutputAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None).WaitAsync(TestSocket.DefaultTimeout);
        var left = await NextPresenceAsync(watcher);
        Assert.Equal("leave", left.GetProperty("action").GetString());
        Assert.Equal("bob", left.GetProperty("clientId").GetString());
    }

    private static async Task<List<JsonElement>> WaitForMembersAsync(TestSocket socket, string channel, int count)
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var reply = await OkAsync(socket, new() { ["type"] = "presence", ["channel"] = channel, ["action"] = "get" });
            var members = reply.GetProperty("members").EnumerateArray().ToList();
            if (members.Count == count)
            {
                return members;
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"presence of {channel} never had {count} members");
    }

    [Fact]
    public async Task Enter_WithoutClientId_Gets40000()
    {
        await using var anonymous = await ConnectAsync(null);
        var reply = await anonymous.RequestAsync(new() { ["type"] = "presence", ["channel"] = "room:3", ["action"] = "enter" });
        Assert.Equal(40000, reply.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Enter_WithoutPresenceCapability_Gets40300()
    {
        await using var socket = await ConnectAsync("sub", RelayServer.SubscribeOnlyKey);
        var reply = await socket.RequestAsync(new() { ["type"] = "presence", ["channel"] = "room:4", ["action"] = "enter" });
        Assert.Equal(40300, reply.GetProperty("code").GetInt32());
        var get = await socket.RequestAsync(new() { ["type"] = "presence", ["channel"] = "room:4", ["action"] = "get" });
        Assert.Equal("ok", get.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Presence_WithUnknownAction_Gets40000()
    {
        await using var socket = await ConnectAsync("x");
        var reply = await socket.RequestAsync(new() { ["type"] = "presence", ["channel"] = "room:5", ["action"] = "dance" });
        Assert.Equal(40000, reply.GetProperty("code").GetInt32());
    }
}
