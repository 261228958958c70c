using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Relay.Ingress;
using Relay.Testing;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// Clients that close while Redis is down: their presence leaves cannot be sent then, and used to be dropped, so their
/// members stayed (listed by <c>get</c>, no <c>leave</c> event) as long as their node lived; so did those of clients
/// whose own <c>leave</c> failed (50300) before they closed. Redis keeps its data here
/// (append-only, fsynced per write), as a production Redis does across a restart.
/// </summary>
public sealed class PresenceLeaveRetryTests
{
    private const int Leavers = 20;

    [Fact]
    public async Task ClientsClosingWhileRedisIsDown_LeavePresence_OnceRedisIsBack()
    {
        await using var redis = await RedisServer.StartAsync(appendOnly: true);
        var settings = ServerFixture.Settings();
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Endpoint"] = $"127.0.0.1:{redis.Port}";
        settings["Relay:Redis:LeaseTtl"] = "00:00:02";
        settings["Relay:Redis:RequestTimeout"] = "00:00:03";
        settings["Relay:Redis:CommandTimeout"] = "00:00:01";

        // Longer than the outage: the node is never taken for dead (which would evict every member it holds).
        settings["Relay:Redis:NodeTtl"] = "00:01:00";
        await using var server = await RelayServer.StartAsync(settings);
        var node = server.Services.GetRequiredService<IngressNode>();

        await using var watcher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "watcher"));
        Assert.Equal("ok", (await watcher.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "room:lobby" })).GetProperty("type").GetString());

        // Fan-out delivers on this channel before anyone enters: a presence event published before this process's fan-out
        // holds the channel's shard is lost (it has no seq to read back; see docs/distributed.md), and this test is about
        // leaves during an outage, not about start-up (a CI run once missed an enter here).
        Assert.Equal("ok", (await watcher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "room:lobby", ["data"] = "ready" })).GetProperty("type").GetString());
        await watcher.ReceiveMessageAsync();
        var leavers = new List<TestSocket>();
        try
        {
            for (var i = 0; i < Leavers; i++)
            {
                var leaver = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, $"leaver-{i}"));
                leavers.Add(leaver);
                var entered = await leaver.RequestAsync(new() { ["type"] = "presence", ["channel"] = "room:lobby", ["action"] = "enter" });
                Assert.True(entered.GetProperty("type").GetString() == "ok", entered.GetRawText());
            }

            for (var i = 0; i < Leavers; i++)
            {
                Assert.Equal("enter", (await NextPresenceAsync(watcher)).GetProperty("action").GetString());
            }

            Assert.Equal(Leavers, (await MembersAsync(watcher)).Count);

            redis.Kill();

            // Half ask to leave first and are told the engine is down (the leave did not happen); then all close.
            var refused = await Task.WhenAll(leavers.Where(static (_, i) => i % 2 == 0).Select(static leaver =>
                leaver.RequestAsync(new() { ["type"] = "presence", ["channel"] = "room:lobby", ["action"] = "leave" })));
            Assert.All(refused, static reply => Assert.Equal(50300, reply.GetProperty("code").GetInt32()));
            foreach (var leaver in leavers)
            {
                await leaver.DisposeAsync();
            }

            // Each close tried its leave and gave up (the request timeout) before the connection was let go.
            var closedBy = DateTime.UtcNow.AddSeconds(20);
            while (node.ConnectionCount != 1)
            {
                Assert.True(DateTime.UtcNow < closedBy, $"{node.ConnectionCount - 1} of the leavers are still held 20 s after they closed");
                await Task.Delay(50);
            }
        }
        finally
        {
            foreach (var leaver in leavers)
            {
                await leaver.DisposeAsync();
            }
        }

        await redis.RestartAsync();

        // Every leaver leaves: get lists none of them, and the watcher got a leave event for each.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        List<string> members;
        while ((members = await MembersOrErrorAsync(watcher)).Count > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, $"30 s after Redis came back, these are still members: {string.Join(", ", members)}");
            await Task.Delay(500);
        }

        var left = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < Leavers; i++)
        {
            var leave = await NextPresenceAsync(watcher);
            Assert.Equal("leave", leave.GetProperty("action").GetString());
            left.Add(leave.GetProperty("clientId").GetString()!);
        }

        Assert.Equal(Leavers, left.Count);
    }

    private static Task<JsonElement> NextPresenceAsync(TestSocket socket) =>
        socket.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence");

    private static async Task<List<string>> MembersAsync(TestSocket socket)
    {
        var reply = await socket.RequestAsync(new() { ["type"] = "presence", ["channel"] = "room:lobby", ["action"] = "get" });
        Assert.True(reply.GetProperty("type").GetString() == "ok", reply.GetRawText());
        return [.. reply.GetProperty("members").EnumerateArray().Select(static m => m.GetProperty("clientId").GetString()!)];
    }

    private static async Task<List<string>> MembersOrErrorAsync(TestSocket socket)
    {
        var reply = await socket.RequestAsync(new() { ["type"] = "presence", ["channel"] = "room:lobby", ["action"] = "get" });
        return reply.GetProperty("type").GetString() == "ok"
            ? [.. reply.GetProperty("members").EnumerateArray().Select(static m => m.GetProperty("clientId").GetString()!)]
            : [reply.GetRawText()];
    }
}
