using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// One public endpoint: every ingress node answers every public path, token requests and the JWKS included (passed to
/// the auth service), and apps and keys edited in the auth service's settings file reach both nodes within seconds.
/// </summary>
public sealed class PublicEndpointTests(ITestOutputHelper output)
{
    // A key change is published within a second, loaded within a second, and applied within a second: 15 s is margin.
    private static readonly TimeSpan KeyChangeWithin = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task TokensAndJwks_AnswerOnEveryIngressNode_AsTheAuthServiceAnswers()
    {
        await using var cluster = await RelayCluster.StartAsync();
        cluster.Output = output.WriteLine;
        using var http = new HttpClient { Timeout = TestSocket.DefaultTimeout };
        var authJwks = await http.GetStringAsync(new Uri($"http://127.0.0.1:{cluster.Auth.Port}/.well-known/jwks.json"));
        ServiceProcess[] nodes = [cluster.IngressA, cluster.IngressB];
        for (var i = 0; i < nodes.Length; i++)
        {
            var node = nodes[i];
            var other = nodes[1 - i];

            // The JWKS, byte for byte the auth service's, with its caching.
            using (var jwks = await http.GetAsync(new Uri($"http://127.0.0.1:{node.Port}/.well-known/jwks.json")))
            {
                Assert.Equal(HttpStatusCode.OK, jwks.StatusCode);
                Assert.Equal(authJwks, await jwks.Content.ReadAsStringAsync());
                Assert.Equal("application/json", jwks.Content.Headers.ContentType?.MediaType);
                Assert.Equal(TimeSpan.FromSeconds(300), jwks.Headers.CacheControl?.MaxAge);
            }

            // A token issued through this node opens a connection on the other, with the capabilities asked for.
            var clientId = "client-" + node.Name;
            using (var issued = await PostTokenAsync(http, node, RelayServer.Key, $$"""{"clientId":"{{clientId}}","capabilities":{"chat:*":["subscribe"]},"ttlSeconds":600}"""))
            {
                var body = await issued.Content.ReadAsStringAsync();
                Assert.True(issued.StatusCode == HttpStatusCode.OK, body);
                Assert.Equal("no-store", issued.Headers.CacheControl?.ToString());
                var token = JsonDocument.Parse(body).RootElement.GetProperty("token").GetString()!;
                await using var socket = await TestSocket.ConnectAsync(new Uri($"ws://127.0.0.1:{other.Port}/v1/realtime?token={Uri.EscapeDataString(token)}"));
                Assert.Equal(clientId, socket.Connected.GetProperty("clientId").GetString());
                Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "chat:a" })).GetProperty("type").GetString());
                Assert.Equal(40300, (await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "news" })).GetProperty("code").GetInt32());
            }

            // The auth service's refusals come back as it gave them.
            using (var wrong = await PostTokenAsync(http, node, "test.root:not-the-secret-0123456789", "{}"))
            {
                Assert.Equal((HttpStatusCode.Unauthorized, 40102), (wrong.StatusCode, await ErrorCodeAsync(wrong)));
            }

            using (var beyond = await PostTokenAsync(http, node, RelayServer.ChatOnlyKey, """{"capabilities":{"*":["subscribe"]}}"""))
            {
                Assert.Equal((HttpStatusCode.Forbidden, 40300), (beyond.StatusCode, await ErrorCodeAsync(beyond)));
            }

            using (var anonymous = await http.PostAsync(new Uri($"http://127.0.0.1:{node.Port}/v1/tokens?key={Uri.EscapeDataString(RelayServer.Key)}"), new StringContent("{}", Encoding.UTF8, "application/json")))
            {
                Assert.Equal((HttpStatusCode.Unauthorized, 40101), (anonymous.StatusCode, await ErrorCodeAsync(anonymous)));
            }
        }

        // The auth service gone: a clear 503 in the protocol's error shape, at once (not after the timeout), on both nodes.
        cluster.Auth.Kill();
        foreach (var node in nodes)
        {
            var started = DateTime.UtcNow;
            using var unavailable = await PostTokenAsync(http, node, RelayServer.Key, "{}");
            Assert.Equal((HttpStatusCode.ServiceUnavailable, 50300), (unavailable.StatusCode, await ErrorCodeAsync(unavailable)));
            Assert.NotNull(unavailable.Headers.RetryAfter);
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(4), $"the 503 took {DateTime.UtcNow - started}");
            using var jwks = await http.GetAsync(new Uri($"http://127.0.0.1:{node.Port}/.well-known/jwks.json"));
            Assert.Equal((HttpStatusCode.ServiceUnavailable, 50300), (jwks.StatusCode, await ErrorCodeAsync(jwks)));
        }
    }

    [Fact]
    public async Task KeysEditedInTheAuthServicesSettings_ReachBothIngressNodes_WithinSeconds()
    {
        var settings = Directory.CreateTempSubdirectory("relay-auth-settings-").FullName;
        try
        {
            var kept = new TestKey("kept", "kept-secret-0123456789");
            var removed = new TestKey("removed", "removed-secret-0123456789");
            var added = new TestKey("added", "added-secret-0123456789");
            WriteSettings(settings, kept, removed);
            await using var cluster = await RelayCluster.StartAsync(authSettingsDirectory: settings);
            cluster.Output = output.WriteLine;
            ServiceProcess[] nodes = [cluster.IngressA, cluster.IngressB];

            // Connections on both nodes: by the key to be removed, by a token it issued, and by a key that stays.
            using var http = new HttpClient { Timeout = TestSocket.DefaultTimeout };
            var doomed = new List<TestSocket>();
            var staying = new List<TestSocket>();
            try
            {
                foreach (var node in nodes)
                {
                    using var issued = await PostTokenAsync(http, node, removed.Credentials, """{"clientId":"t","ttlSeconds":600}""");
                    Assert.True(issued.StatusCode == HttpStatusCode.OK, await issued.Content.ReadAsStringAsync());
                    var token = JsonDocument.Parse(await issued.Content.ReadAsStringAsync()).RootElement.GetProperty("token").GetString()!;
                    doomed.Add(await TestSocket.ConnectAsync(Realtime(node, "key=" + Uri.EscapeDataString(removed.Credentials))));
                    doomed.Add(await TestSocket.ConnectAsync(Realtime(node, "token=" + Uri.EscapeDataString(token))));
                    staying.Add(await TestSocket.ConnectAsync(Realtime(node, "key=" + Uri.EscapeDataString(kept.Credentials))));
                }

                foreach (var node in nodes)
                {
                    Assert.Equal(HttpStatusCode.Unauthorized, await TestSocket.RefusedUpgradeAsync(Realtime(node, "key=" + Uri.EscapeDataString(added.Credentials))));
                }

                // The operator edits the file: one key out, one in. No restart.
                var edited = DateTime.UtcNow;
                WriteSettings(settings, kept, added);

                foreach (var socket in doomed)
                {
                    var disconnect = await socket.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "disconnect", KeyChangeWithin);
                    Assert.Equal(40102, disconnect.GetProperty("code").GetInt32());
                    Assert.False(disconnect.GetProperty("reconnect").GetBoolean());
                }

                output.WriteLine($"all {doomed.Count} connections of the removed key cut {(DateTime.UtcNow - edited).TotalSeconds:0.0} s after the edit");
                foreach (var node in nodes)
                {
                    await UntilAsync(async () => await TestSocket.RefusedUpgradeAsync(Realtime(node, "key=" + Uri.EscapeDataString(removed.Credentials))) == HttpStatusCode.Unauthorized, edited, $"{node.Name} still accepts the removed key");
                    await UntilAsync(async () => await AcceptsAsync(Realtime(node, "key=" + Uri.EscapeDataString(added.Credentials))), edited, $"{node.Name} does not accept the added key");
                    using var issued = await PostTokenAsync(http, node, added.Credentials, """{"clientId":"new","ttlSeconds":600}""");
                    Assert.True(issued.StatusCode == HttpStatusCode.OK, await issued.Content.ReadAsStringAsync());
                    using var refused = await PostTokenAsync(http, node, removed.Credentials, "{}");
                    Assert.Equal((HttpStatusCode.Unauthorized, 40102), (refused.StatusCode, await ErrorCodeAsync(refused)));
                }

                foreach (var socket in staying)
                {
                    Assert.Equal("pong", (await socket.RequestAsync(new() { ["type"] = "ping" })).GetProperty("type").GetString());
                }
            }
            finally
            {
                foreach (var socket in doomed.Concat(staying))
                {
                    await socket.DisposeAsync();
                }
            }
        }
        finally
        {
            Directory.Delete(settings, recursive: true);
        }
    }

    private sealed record TestKey(string Id, string Secret)
    {
        public string Credentials => $"{RelayServer.AppId}.{Id}:{Secret}";
    }

    // The auth service's appsettings.json: the test app with these keys (every operation on every channel), written whole
    // (a rename), as an operator's editor or a config tool replaces it.
    private static void WriteSettings(string directory, params TestKey[] keys)
    {
        var json = JsonSerializer.Serialize(new
        {
            Relay = new
            {
                Auth = new
                {
                    Apps = new[]
                    {
                        new
                        {
                            Id = RelayServer.AppId,
                            Keys = keys.Select(static k => new { k.Id, k.Secret, Capabilities = new[] { new { Channel = "*", Operations = new[] { "*" } } } }).ToArray(),
                        },
                    },
                },
            },
        });
        var path = Path.Combine(directory, "appsettings.json");
        File.WriteAllText(path + ".tmp", json);
        File.Move(path + ".tmp", path, overwrite: true);
    }

    private static Uri Realtime(ServiceProcess node, string query) => new($"ws://127.0.0.1:{node.Port}/v1/realtime?{query}");

    private static async Task<bool> AcceptsAsync(Uri uri)
    {
        try
        {
            await using var socket = await TestSocket.ConnectAsync(uri);
            return true;
        }
        catch (System.Net.WebSockets.WebSocketException)
        {
            return false;
        }
    }

    private static async Task UntilAsync(Func<Task<bool>> condition, DateTime since, string failure)
    {
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow - since < KeyChangeWithin, $"{failure} {KeyChangeWithin.TotalSeconds} s after the edit");
            await Task.Delay(200);
        }
    }

    private static async Task<HttpResponseMessage> PostTokenAsync(HttpClient http, ServiceProcess node, string key, string json)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri($"http://127.0.0.1:{node.Port}/v1/tokens"))
        {
            Content = new StringContent(json, Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(key)));
        return await http.SendAsync(request);
    }

    private static async Task<int> ErrorCodeAsync(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync();
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal((int)response.StatusCode, error.GetProperty("statusCode").GetInt32());
        return error.GetProperty("code").GetInt32();
    }
}
