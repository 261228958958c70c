using System.Net;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// Distributed: an ingress node with <c>Relay:Auth:KeySource=redis</c> follows the keys the auth service publishes, and
/// applies a change to the connections it holds, within seconds of the auth service's configuration changing.
/// </summary>
public abstract class KeyChangeRedisSpec(IRedisBusSettings redis)
{
    private static readonly KeyFile.Key Removed = new("removed", "removed-secret-0123456789", "*");
    private static readonly KeyFile.Key Narrowed = new("narrowed", "narrowed-secret-0123456789", "*");

    [Fact]
    public async Task KeyChangedAtTheAuthService_ReachesConnectionsOnAnIngressNode()
    {
        using var file = new KeyFile();
        file.Write(Removed, Narrowed);
        var authSettings = ServerFixture.Settings();
        redis.AddTo(authSettings);
        await using var auth = await RelayServer.StartAsync(authSettings, sources: file.AddTo);
        var nodeSettings = ServerFixture.Settings();
        redis.AddTo(nodeSettings);
        nodeSettings["Relay:Auth:KeySource"] = "redis";
        nodeSettings["Relay:Ingress:AuthUrl"] = auth.BaseAddress.ToString();
        await using var node = await RelayServer.StartAsync(nodeSettings);
        await WaitUntilAcceptedAsync(node, Removed);

        await using var byKey = await TestSocket.ConnectAsync(node.RealtimeUriWithKey(Removed.Credentials));
        await using var byRelayToken = await TestSocket.ConnectAsync(new Uri($"{node.RealtimeUri}?token={await KeyChangeTests.RelayTokenAsync(auth, Removed)}"));
        await using var stream = await KeyChangeTests.OpenStreamAsync(node, Removed, "chat:a");
        await using var narrowed = await TestSocket.ConnectAsync(node.RealtimeUriWithKey(Narrowed.Credentials));
        await using var narrowedStream = await KeyChangeTests.OpenStreamAsync(node, Narrowed, "news:b");
        Assert.Equal("ok", (await narrowed.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "news:b" })).GetProperty("type").GetString());
        Assert.Equal("ok", (await narrowed.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "chat:a" })).GetProperty("type").GetString());

        file.Rewrite(auth, Narrowed with { Channels = ["chat:*"] });

        await KeyChangeTests.AssertDisconnectedAsync(byKey, 40102);
        await KeyChangeTests.AssertDisconnectedAsync(byRelayToken, 40102);
        Assert.Equal(40102, (await stream.ReadEventAsync("disconnect", KeyChangeTests.Within)).Json.GetProperty("code").GetInt32());
        var drop = await narrowed.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "error", KeyChangeTests.Within);
        Assert.Equal((40300, "news:b"), (drop.GetProperty("code").GetInt32(), drop.GetProperty("channel").GetString()));
        Assert.Equal(40300, (await narrowedStream.ReadEventAsync("disconnect", KeyChangeTests.Within)).Json.GetProperty("code").GetInt32());
        Assert.Equal("pong", (await narrowed.RequestAsync(new() { ["type"] = "ping" })).GetProperty("type").GetString());
        Assert.Equal(HttpStatusCode.Unauthorized, await TestSocket.RefusedUpgradeAsync(node.RealtimeUriWithKey(Removed.Credentials)));
    }

    // The node loads the keys a moment after it starts (and is not ready until then).
    private static async Task WaitUntilAcceptedAsync(RelayServer node, KeyFile.Key key)
    {
        using var http = new HttpClient { BaseAddress = node.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        for (var attempt = 0; attempt < 150; attempt++)
        {
            using var response = await http.GetAsync($"v1/channels?key={Uri.EscapeDataString(key.Credentials)}");
            if (response.StatusCode == HttpStatusCode.OK)
            {
                return;
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"the node did not accept {key.Id} within 15 s");
    }
}
