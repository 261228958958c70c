using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>The read rate: subscribes, history reads and presence gets per connection (each one a routing request).</summary>
public abstract class ReadLimitsSpec : IAsyncLifetime
{
    // 50 at once, then 2 a second: slow enough that refills during a test on a busy machine stay small.
    private const int Rate = 2;
    private const int Burst = 50;

    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Relay:Ingress:ReadRatePerSecond"] = Rate.ToString(CultureInfo.InvariantCulture),
            ["Relay:Ingress:ReadBurst"] = Burst.ToString(CultureInfo.InvariantCulture),
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

    [Fact]
    public async Task Reads_BackToBack_AboveTheReadRate_Get42900_ThenRecover()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "reader"));
        var clock = Stopwatch.StartNew();

        // Three frames of a hundred reads on new names each, back to back: subscribes, history and presence gets.
        var next = 0;
        var codes = await SendFrameAsync(socket, Enumerable.Range(0, 100).Select(i => (i % 3) switch
        {
            0 => $$"""{"type":"subscribe","ref":{{++next}},"channel":"r:{{i}}"}""",
            1 => $$"""{"type":"history","ref":{{++next}},"channel":"h:{{i}}"}""",
            _ => $$"""{"type":"presence","ref":{{++next}},"channel":"p:{{i}}","action":"get"}""",
        }));
        for (var frame = 1; frame < 3; frame++)
        {
            codes.AddRange(await SendFrameAsync(socket, Enumerable.Range(0, 100).Select(i => $$"""{"type":"history","ref":{{++next}},"channel":"h:{{frame}}:{{i}}"}""")));
        }

        var elapsed = clock.Elapsed.TotalSeconds;
        Assert.All(codes, static c => Assert.True(c is "ok" or "42900", c));
        Assert.Equal(Enumerable.Repeat("ok", Burst), codes.Take(Burst));
        Assert.InRange(codes.Count(static c => c == "ok"), Burst, Burst + (int)Math.Ceiling(Rate * elapsed) + 1);

        // Unsubscribing is not a read: it always goes through. Once the bucket refills, reads do too.
        var unsubscribes = await SendFrameAsync(socket, Enumerable.Range(0, 100).Where(static i => i % 3 == 0).Select(i => $$"""{"type":"unsubscribe","ref":{{++next}},"channel":"r:{{i}}"}"""));
        Assert.All(unsubscribes, static c => Assert.Equal("ok", c));
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        Assert.Equal(["ok"], await SendFrameAsync(socket, [$$"""{"type":"history","ref":{{++next}},"channel":"after"}"""]));
    }

    [Fact]
    public async Task Subscribe_RefusedByTheReadRate_KeepsTheSubscriptionItHad()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal(["ok"], await SendFrameAsync(socket, ["""{"type":"subscribe","ref":1,"channel":"keep"}"""]));

        // The bucket is emptied by history reads; subscribing to the same channel again (to resume, say) is refused.
        var codes = await SendFrameAsync(socket, Enumerable.Range(2, Burst + 20).Select(static i => $$"""{"type":"history","ref":{{i}},"channel":"keep"}""").Append($$"""{"type":"subscribe","ref":{{Burst + 22}},"channel":"keep"}"""));
        Assert.Equal("42900", codes[^1]);

        // The refused subscribe left the old subscription in place: it still gets the channel's messages.
        using var http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var response = await http.PostAsync("v1/channels/keep/messages", new StringContent("""{"data":"still here"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var message = await socket.ReceiveMessageAsync();
        Assert.Equal("still here", message.GetProperty("data").GetString());
    }

    private static string Code(JsonElement reply) =>
        reply.GetProperty("type").GetString() == "ok" ? "ok" : reply.GetProperty("code").GetInt32().ToString(CultureInfo.InvariantCulture);

    /// <summary>Sends the requests as one frame and returns each reply's outcome in request order.</summary>
    private static async Task<List<string>> SendFrameAsync(TestSocket socket, IEnumerable<string> requests)
    {
        var list = requests.ToList();
        await socket.SendTextAsync("[" + string.Join(",", list) + "]");
        var refs = list.Select(static r => JsonDocument.Parse(r).RootElement.GetProperty("ref").GetInt32()).ToList();
        var wanted = refs.ToHashSet();
        var byRef = new Dictionary<int, string>();
        while (byRef.Count < list.Count)
        {
            var reply = await socket.ReceiveMatchingAsync(f => f.TryGetProperty("ref", out var r) && r.ValueKind == JsonValueKind.Number && wanted.Contains(r.GetInt32()), TimeSpan.FromSeconds(30));
            byRef[reply.GetProperty("ref").GetInt32()] = Code(reply);
        }

        return [.. refs.Select(r => byRef[r])];
    }
}
