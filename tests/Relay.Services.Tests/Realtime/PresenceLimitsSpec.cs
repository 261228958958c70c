using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>Presence's limits: entries per connection, members per channel, data size and rate; over one, nothing is stored.</summary>
public abstract class PresenceLimitsSpec : IAsyncLifetime
{
    // Presence changes share the publish bucket: 100 at once, then 2 a second, slow enough that refills during a test
    // on a busy machine stay small next to what is refused.
    private const int Rate = 2;
    private const int Burst = 100;
    private const int PerConnection = 10;
    private const int DataBytes = 1024;
    private const int CrowdMembers = 5;

    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Relay:Ingress:PublishRatePerSecond"] = Rate.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Relay:Ingress:PublishBurst"] = Burst.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Relay:Ingress:MaxPresencePerConnection"] = PerConnection.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Relay:Ingress:MaxPresenceDataBytes"] = DataBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Relay:Namespaces:Rules:crowd:MaxPresenceMembers"] = CrowdMembers.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        ConfigureBus(settings);
        _server = await StartServerAsync(settings);
    }

    /// <summary>
    /// Lets a variant start the server beside what its bus needs (a Dapr sidecar, attached once the server listens);
    /// none means the server alone.
    /// </summary>
    protected virtual Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => RelayServer.StartAsync(settings);

    /// <summary>Lets a variant put the server on another bus; none means the in-memory bus.</summary>
    protected virtual void ConfigureBus(IDictionary<string, string?> settings)
    {
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private Task<TestSocket> ConnectAsync(string clientId) => TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, clientId));

    [Fact]
    public async Task Enter_PastMaxPresencePerConnection_Gets42900AndStoresNothing()
    {
        await using var hoarder = await ConnectAsync("hoarder");
        await using var watcher = await ConnectAsync("watcher");

        // One frame of 60 enters, each with data, back to back: only the first ten are kept.
        var codes = await SendFrameAsync(hoarder, Enumerable.Range(0, 60).Select(static i => Presence(i + 1, $"many:{i}", "enter", $$"""{"n":{{i}},"pad":"{{new string('x', 800)}}"}""")));
        Assert.Equal(Enumerable.Repeat("ok", PerConnection), codes.Take(PerConnection));
        Assert.Equal(Enumerable.Repeat("42900", 60 - PerConnection), codes.Skip(PerConnection));

        Assert.Single(await MembersAsync(watcher, "many:0"));
        foreach (var refused in new[] { "many:10", "many:35", "many:59" })
        {
            Assert.Empty(await MembersAsync(watcher, refused));
        }

        // Updating a channel already entered is no new entry; leaving one makes room for another.
        Assert.Equal("ok", Code(await hoarder.RequestAsync(new() { ["type"] = "presence", ["channel"] = "many:3", ["action"] = "update", ["data"] = 1 })));
        Assert.Equal("ok", Code(await hoarder.RequestAsync(new() { ["type"] = "presence", ["channel"] = "many:0", ["action"] = "leave" })));
        Assert.Equal("ok", Code(await hoarder.RequestAsync(new() { ["type"] = "presence", ["channel"] = "many:40", ["action"] = "enter" })));
        Assert.Equal("42900", Code(await hoarder.RequestAsync(new() { ["type"] = "presence", ["channel"] = "many:41", ["action"] = "enter" })));
        Assert.Single(await MembersAsync(watcher, "many:40"));
        Assert.Empty(await MembersAsync(watcher, "many:0"));
    }

    [Fact]
    public async Task Data_OverMaxPresenceDataBytes_Gets41300AndStoresNothing()
    {
        await using var client = await ConnectAsync("big");
        await using var watcher = await ConnectAsync("watcher");

        // 60 KB (fits a frame, far over the limit), then one byte over, then exactly the limit (data is its raw JSON).
        var huge = "\"" + new string('h', 60 * 1024) + "\"";
        var over = "\"" + new string('o', DataBytes - 1) + "\"";
        var exact = "\"" + new string('e', DataBytes - 2) + "\"";
        Assert.Equal(DataBytes + 1, Encoding.UTF8.GetByteCount(over));
        var codes = await SendFrameAsync(client, [Presence(1, "big:1", "enter", huge), Presence(2, "big:2", "enter", over)]);
        Assert.Equal(["41300", "41300"], codes);
        Assert.Empty(await MembersAsync(watcher, "big:1"));
        Assert.Empty(await MembersAsync(watcher, "big:2"));

        Assert.Equal(["ok"], await SendFrameAsync(client, [Presence(3, "big:1", "enter", exact)]));
        Assert.Equal(["41300"], await SendFrameAsync(client, [Presence(4, "big:1", "update", over)]));
        var member = Assert.Single(await MembersAsync(watcher, "big:1"));
        Assert.Equal(DataBytes - 2, member.GetProperty("data").GetString()!.Length);
    }

    [Fact]
    public async Task Changes_BackToBack_AreRateLimitedWith42900_AndShareThePublishBucket()
    {
        await using var client = await ConnectAsync("chatty");
        await using var watcher = await ConnectAsync("watcher");
        Assert.Equal("ok", Code(await watcher.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "rate:1" })));

        // 600 updates in six frames, back to back, as a flood would send them; then thirty publishes.
        var clock = Stopwatch.StartNew();
        var codes = new List<string>();
        var next = 1;
        for (var frame = 0; frame < 6; frame++)
        {
            codes.AddRange(await SendFrameAsync(client, Enumerable.Range(0, 100).Select(i => Presence(next++, "rate:1", "update", $$"""{"i":{{(frame * 100) + i}}}"""))));
        }

        var publishes = await SendFrameAsync(client, Enumerable.Range(0, 30).Select(i => $$"""{"type":"publish","ref":{{next++}},"channel":"rate:2","data":{{i}}}"""));
        var elapsed = clock.Elapsed.TotalSeconds;

        var accepted = codes.Count(static c => c == "ok");
        var allowed = Burst + (int)Math.Ceiling(Rate * elapsed) + 1;
        Assert.All(codes, static c => Assert.True(c is "ok" or "42900", c));
        Assert.InRange(accepted, Burst, allowed);
        Assert.Equal(Enumerable.Repeat("ok", Burst), codes.Take(Burst));

        // The publishes found the bucket the presence changes emptied: only what refilled meanwhile went through.
        Assert.InRange(publishes.Count(static c => c == "ok"), 0, allowed - accepted);
        Assert.Contains("42900", publishes);

        // Every accepted change and only those reached the subscriber: a refused one was neither stored nor sent.
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        Assert.Equal(["ok"], await SendFrameAsync(client, [Presence(next, "rate:1", "update", """{"last":true}""")]));
        var events = 0;
        while (true)
        {
            var presence = await watcher.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "presence");
            if (presence.GetProperty("data").TryGetProperty("last", out _))
            {
                break;
            }

            events++;
            Assert.True(events <= accepted, $"the subscriber got more presence events than the {accepted} accepted changes");
        }

        Assert.Equal(accepted, events);
    }

    [Fact]
    public async Task Members_PastTheNamespaceMax_Get42900_AndStoreNothing()
    {
        await using var watcher = await ConnectAsync("watcher");
        var clients = new List<TestSocket>();
        try
        {
            for (var i = 0; i < 12; i++)
            {
                clients.Add(await ConnectAsync($"m{i}"));
            }

            // Twelve connections enter at once: the set takes exactly its maximum, whichever connections win.
            var codes = await Task.WhenAll(clients.Select(static c => c.RequestAsync(new() { ["type"] = "presence", ["channel"] = "crowd:room", ["action"] = "enter", ["data"] = "here" })));
            Assert.Equal(CrowdMembers, codes.Count(static r => Code(r) == "ok"));
            Assert.Equal(12 - CrowdMembers, codes.Count(static r => Code(r) == "42900"));
            Assert.Equal(CrowdMembers, (await MembersAsync(watcher, "crowd:room")).Count);

            // A member may still update at the maximum; one leaving lets one refused connection in.
            var members = Enumerable.Range(0, 12).Where(i => Code(codes[i]) == "ok").ToList();
            var refused = Enumerable.Range(0, 12).Where(i => Code(codes[i]) != "ok").ToList();
            Assert.Equal("ok", Code(await clients[members[0]].RequestAsync(new() { ["type"] = "presence", ["channel"] = "crowd:room", ["action"] = "update", ["data"] = "busy" })));
            Assert.Equal("42900", Code(await clients[refused[0]].RequestAsync(new() { ["type"] = "presence", ["channel"] = "crowd:room", ["action"] = "enter" })));
            Assert.Equal("ok", Code(await clients[members[1]].RequestAsync(new() { ["type"] = "presence", ["channel"] = "crowd:room", ["action"] = "leave" })));
            Assert.Equal("ok", Code(await clients[refused[0]].RequestAsync(new() { ["type"] = "presence", ["channel"] = "crowd:room", ["action"] = "enter" })));
            var now = (await MembersAsync(watcher, "crowd:room")).Select(static m => m.GetProperty("clientId").GetString()).ToList();
            Assert.Equal(CrowdMembers, now.Count);
            Assert.Contains($"m{refused[0]}", now);
            Assert.DoesNotContain($"m{members[1]}", now);

            // Other namespaces keep the default maximum.
            Assert.Equal("ok", Code(await clients[refused[1]].RequestAsync(new() { ["type"] = "presence", ["channel"] = "room:open", ["action"] = "enter" })));
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    private static string Presence(int reference, string channel, string action, string data) =>
        $$"""{"type":"presence","ref":{{reference}},"channel":"{{channel}}","action":"{{action}}","data":{{data}}}""";

    private static string Code(JsonElement reply) =>
        reply.GetProperty("type").GetString() == "ok" ? "ok" : reply.GetProperty("code").GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Sends the requests as one frame and returns each reply's outcome in request order (refs 1..n of the frame).</summary>
    private static async Task<List<string>> SendFrameAsync(TestSocket socket, IEnumerable<string> requests)
    {
        var list = requests.ToList();
        await socket.SendTextAsync("[" + string.Join(",", list) + "]");
        var byRef = new Dictionary<int, string>();
        var refs = list.Select(static r => JsonDocument.Parse(r).RootElement.GetProperty("ref").GetInt32()).ToList();
        var wanted = refs.ToHashSet();
        while (byRef.Count < list.Count)
        {
            var reply = await socket.ReceiveMatchingAsync(f => f.TryGetProperty("ref", out var r) && r.ValueKind == JsonValueKind.Number && wanted.Contains(r.GetInt32()), TimeSpan.FromSeconds(30));
            byRef[reply.GetProperty("ref").GetInt32()] = Code(reply);
        }

        return [.. refs.Select(r => byRef[r])];
    }

    private static async Task<List<JsonElement>> MembersAsync(TestSocket socket, string channel)
    {
        var reply = await socket.RequestAsync(new() { ["type"] = "presence", ["channel"] = channel, ["action"] = "get" });
        Assert.True(reply.GetProperty("type").GetString() == "ok", reply.GetRawText());
        return [.. reply.GetProperty("members").EnumerateArray()];
    }
}
