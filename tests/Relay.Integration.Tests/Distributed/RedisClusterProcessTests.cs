using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// Relay as six processes (auth, two routing, one fan-out, ingress A and B) over a three-master Redis Cluster, every
/// second connection on the other ingress node: tokens and the JWKS, order, history, recovery and presence across nodes.
/// </summary>
public sealed class RedisClusterProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(20);

    [Fact(Timeout = 180_000)]
    public async Task SixProcessesOverARedisCluster_TokensHistoryRecoveryPresenceAndOrder_HoldAcrossIngressNodes()
    {
        await using var cluster = await RelayCluster.StartAsync(overRedisCluster: true);
        cluster.Output = output.WriteLine;
        ServiceProcess[] nodes = [cluster.IngressA, cluster.IngressB];
        ServiceProcess Node(int connection) => nodes[connection % 2];

        // Tokens and the JWKS: issued through one node, the token opens a connection on the other; both nodes serve the
        // auth service's JWKS.
        using var http = new HttpClient { Timeout = TestSocket.DefaultTimeout };
        var authJwks = await http.GetStringAsync(new Uri($"http://127.0.0.1:{cluster.Auth.Port}/.well-known/jwks.json"));
        foreach (var node in nodes)
        {
            Assert.Equal(authJwks, await http.GetStringAsync(new Uri($"http://127.0.0.1:{node.Port}/.well-known/jwks.json")));
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri($"http://127.0.0.1:{cluster.IngressA.Port}/v1/tokens"))
        {
            Content = new StringContent("""{"clientId":"alice","ttlSeconds":600}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var issued = await http.SendAsync(request);
        var issuedBody = await issued.Content.ReadAsStringAsync();
        Assert.True(issued.StatusCode == HttpStatusCode.OK, issuedBody);
        var token = JsonDocument.Parse(issuedBody).RootElement.GetProperty("token").GetString()!;
        await using var alice = await TestSocket.ConnectAsync(new Uri($"ws://127.0.0.1:{cluster.IngressB.Port}/v1/realtime?token={Uri.EscapeDataString(token)}"));
        Assert.Equal("alice", alice.Connected.GetProperty("clientId").GetString());

        // Order across nodes: channels spread over the masters (and both routing instances); a subscriber on each node,
        // publishers alternating between the nodes. Every subscriber gets every message of each channel once, in seq order.
        var channels = Enumerable.Range(0, 6).Select(static i => $"ledger-{i}").ToArray();
        var subscribers = new TestSocket[2];
        for (var i = 0; i < subscribers.Length; i++)
        {
            subscribers[i] = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(Node(i)));
            foreach (var channel in channels)
            {
                await OkAsync(subscribers[i], new() { ["type"] = "subscribe", ["channel"] = channel });
            }
        }

        const int PerChannel = 20;
        var publishers = new[] { await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(Node(0))), await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(Node(1))) };
        for (var round = 1; round <= PerChannel; round++)
        {
            foreach (var channel in channels)
            {
                var ok = await OkAsync(publishers[round % 2], new() { ["type"] = "publish", ["channel"] = channel, ["id"] = $"{channel}-{round}", ["data"] = round });
                Assert.Equal(round, ok.GetProperty("seq").GetInt64());
            }
        }

        foreach (var subscriber in subscribers)
        {
            var received = channels.ToDictionary(static c => c, static _ => new List<int>());
            for (var n = 0; n < channels.Length * PerChannel; n++)
            {
                var message = await subscriber.ReceiveMessageAsync(s_wait);
                var list = received[message.GetProperty("channel").GetString()!];
                list.Add(message.GetProperty("data").GetInt32());
                Assert.Equal(list.Count, message.GetProperty("seq").GetInt64());
            }

            Assert.All(channels, channel => Assert.Equal(Enumerable.Range(1, PerChannel), received[channel]));
        }

        // History, read on the node the messages were not published through.
        var history = await OkAsync(subscribers[1], new() { ["type"] = "history", ["channel"] = channels[0], ["limit"] = 100 });
        Assert.Equal(Enumerable.Range(1, PerChannel), history.GetProperty("messages").EnumerateArray().Select(static m => m.GetProperty("data").GetInt32()));

        // Recovery across nodes: the subscriber on A goes away after seq PerChannel, messages are published through B,
        // and it comes back on B with since: every missed message once, in order, then live ones.
        var epoch = history.GetProperty("epoch").GetString();
        await subscribers[0].DisposeAsync();
        for (var round = PerChannel + 1; round <= PerChannel + 5; round++)
        {
            await OkAsync(publishers[1], new() { ["type"] = "publish", ["channel"] = channels[0], ["data"] = round });
        }

        subscribers[0] = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(Node(1)));
        var resumed = await OkAsync(subscribers[0], new() { ["type"] = "subscribe", ["channel"] = channels[0], ["since"] = new { epoch, seq = PerChannel } });
        Assert.True(resumed.GetProperty("recovered").GetBoolean(), resumed.GetRawText());
        await OkAsync(publishers[0], new() { ["type"] = "publish", ["channel"] = channels[0], ["data"] = PerChannel + 6 });
        for (var round = PerChannel + 1; round <= PerChannel + 6; round++)
        {
            var message = await subscribers[0].ReceiveMessageAsync(s_wait);
            Assert.Equal((round, (long)round), (message.GetProperty("data").GetInt32(), message.GetProperty("seq").GetInt64()));
        }

        // Presence across nodes: alice (on B) enters; a watcher on A sees it and gets her from either node.
        await using var watcher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(Node(0)));
        await OkAsync(watcher, new() { ["type"] = "subscribe", ["channel"] = "chat:room" });
        await OkAsync(alice, new() { ["type"] = "presence", ["channel"] = "chat:room", ["action"] = "enter", ["data"] = new { status = "here" } });
        var entered = await watcher.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence", s_wait);
        Assert.Equal(("enter", "alice"), (entered.GetProperty("action").GetString(), entered.GetProperty("clientId").GetString()));
        foreach (var socket in new[] { watcher, subscribers[0] })
        {
            var members = await OkAsync(socket, new() { ["type"] = "presence", ["channel"] = "chat:room", ["action"] = "get" });
            Assert.Equal("alice", Assert.Single(members.GetProperty("members").EnumerateArray()).GetProperty("clientId").GetString());
        }

        foreach (var socket in subscribers.Concat(publishers))
        {
            await socket.DisposeAsync();
        }
    }

    private static async Task<JsonElement> OkAsync(TestSocket socket, Dictionary<string, object?> request)
    {
        var reply = await socket.RequestAsync(request);
        Assert.True(reply.GetProperty("type").GetString() == "ok", "expected ok, got " + reply.GetRawText());
        return reply;
    }
}
