using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Relay.Ingress;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// Every connection's unsent output is budgeted in bytes (<c>SendQueueBytes</c>, default 16 MiB): a client that asks
/// for much more than it reads is cut as a slow consumer (50301) before the node holds more than that for it, and a
/// history page stops at <c>HistoryPageBytes</c> (default 1 MiB). The server runs with the defaults, as shipped.
/// </summary>
// These tests measure the whole process's managed heap: they share the collection nameof(LimitsTests), which runs
// with nothing else beside it.
public abstract partial class SendBudgetSpec : IAsyncLifetime
{
    /// <summary>Messages of 60,000 bytes of data: 200 of them (the default history) make a 12 MB page.</summary>
    private const int PayloadBytes = 60_000;

    private RelayServer _server = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        // A slow consumer's last frames go unread here for a while: keep its socket until the test has read them.
        var settings = new Dictionary<string, string?> { ["Relay:Ingress:CloseTimeout"] = "00:00:30" };
        Configure(settings);
        ConfigureBus(settings);
        _server = await StartServerAsync(settings);
        _http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    /// <summary>
    /// Whether the send path keeps every data frame before the close it sends for a protocol error (RFC 6455 §5.5.1).
    /// </summary>
    protected virtual bool NothingFollowsAProtocolErrorsClose => true;

    /// <summary>Lets a variant run the same tests on another send path.</summary>
    protected virtual void Configure(Dictionary<string, string?> settings)
    {
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

    [Fact]
    public async Task HistoryRequests_FromClientThatNeverReads_CutItWith50301_WhileMemoryStaysBoundedAndOthersGetTheirMessages()
    {
        await PublishLargeAsync("big", 200);
        var node = _server.Services.GetRequiredService<IngressNode>();
        var cutBefore = node.SlowConsumerDisconnects;

        // Someone else's traffic goes on throughout.
        await using var other = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await other.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "chatter" });

        // A small receive buffer and no reading at all: everything the server sends it stays on the server's side.
        await using var greedy = await RawWebSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key), receiveBufferBytes: 4096);
        var before = Heap();
        var request = "[" + string.Join(",", Enumerable.Range(0, 10).Select(static i => $$"""{"type":"history","channel":"big","limit":1000,"ref":{{i}}}""")) + "]";
        var maxGrowth = 0L;
        for (var batch = 0; batch < 30 && node.SlowConsumerDisconnects == cutBefore; batch++)
        {
            // Up to 300 requests for 12 MB each, ten at a time; before the fix they took the node to gigabytes, so the
            // heap is checked after every ten and the test stops at the first sign of it. It also stops sending once
            // the client is cut: a socket closed with unread input is reset, and the reset would discard the
            // disconnect this test reads below before the client could read it.
            await greedy.SendTextAsync(request);
            for (var wait = 0; wait < 150 && node.SlowConsumerDisconnects == cutBefore; wait++)
            {
                await Task.Delay(20);
            }

            await PublishSmallAsync("chatter", batch);
            var chatter = await other.ReceiveMessageAsync();
            Assert.Equal(batch, chatter.GetProperty("data").GetInt32());

            var growth = Heap() - before;
            maxGrowth = Math.Max(maxGrowth, growth);
            Assert.True(growth < 96L * 1024 * 1024, $"the heap grew by {growth / (1024 * 1024)} MiB after {(batch + 1) * 10} history requests from a client that reads nothing");
        }

        // The budget is 16 MiB (pages of about 1 MiB): measured alone, the heap grows by about that much at most.
        Assert.True(node.SlowConsumerDisconnects > cutBefore, $"the client was never cut (heap grew by up to {maxGrowth / (1024 * 1024)} MiB)");

        // Reading at last, it finds the pages that fitted, then the disconnect.
        var cut = await ReadUntilDisconnectAsync(greedy);
        Assert.Equal(50301, cut.GetProperty("code").GetInt32());
        Assert.True(cut.GetProperty("reconnect").GetBoolean());

        // And the others never noticed.
        await PublishSmallAsync("chatter", 1000);
        Assert.Equal(1000, (await other.ReceiveMessageAsync()).GetProperty("data").GetInt32());
    }

    [Fact]
    public async Task HistoryPage_LargerThanItsBudget_StopsEarly_AndBeforeGetsTheRest()
    {
        await PublishLargeAsync("paged", 200);
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));

        var seen = new List<long>();
        long? before = null;
        for (var page = 0; page < 50; page++)
        {
            var request = new Dictionary<string, object?> { ["type"] = "history", ["channel"] = "paged", ["limit"] = 1000 };
            if (before is not null)
            {
                request["before"] = before;
            }

            var reply = await socket.RequestAsync(request);
            Assert.Equal("ok", reply.GetProperty("type").GetString());
            var seqs = reply.GetProperty("messages").EnumerateArray().Select(static m => m.GetProperty("seq").GetInt64()).ToList();
            Assert.NotEmpty(seqs);
            Assert.Equal(Enumerable.Range(0, seqs.Count).Select(i => seqs[0] + i), seqs);
            Assert.Equal(before is null ? 200 : before - 1, seqs[^1]);
            seen.InsertRange(0, seqs);
            var truncated = reply.TryGetProperty("truncated", out var flag) && flag.GetBoolean();
            if (!truncated)
            {
                break;
            }

            // A page stops near its 1 MiB budget, never with more messages than fit in it.
            Assert.InRange(seqs.Count, 10, 1024 * 1024 / PayloadBytes);
            before = seqs[0];
        }

        Assert.Equal(Enumerable.Range(1, 200).Select(static i => (long)i), seen);

        // The HTTP API pages the same way.
        using var http = await _http.GetAsync("v1/channels/paged/messages?limit=1000");
        Assert.Equal(HttpStatusCode.OK, http.StatusCode);
        using var body = JsonDocument.Parse(await http.Content.ReadAsStringAsync());
        Assert.True(body.RootElement.GetProperty("truncated").GetBoolean());
        Assert.Equal(200, body.RootElement.GetProperty("messages").EnumerateArray().Last().GetProperty("seq").GetInt64());
        Assert.InRange(body.RootElement.GetProperty("messages").GetArrayLength(), 10, 1024 * 1024 / PayloadBytes);
    }

    [Fact]
    public async Task ProtocolError_FromClientBehindOnReading_StillGetsItsCloseFrame_AfterWhatWasQueued()
    {
        // A client with megabytes queued for it (a send in flight, more behind it) breaks the protocol: a close frame
        // with a one-byte payload. The server's 1002 follows the messages already on their way (what was still queued
        // is dropped: the connection is failing), nothing follows it, and the socket stays open until it has left.
        // Closing the socket as soon as the connection ended lost it, seen by the client as a bare end of stream.
        await using var client = await RawWebSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key), receiveBufferBytes: 4096);
        await client.SendTextAsync("""{"type":"subscribe","channel":"behind","ref":1}""");
        Assert.Equal("ok", (await client.ReadJsonAsync()).GetProperty("type").GetString());
        const int Queued = 60;
        await PublishLargeAsync("behind", Queued);

        await client.SendFrameAsync(0x8, [0x03]);
        var messages = 0;
        for (var i = 0; i < 10_000; i++)
        {
            var (opcode, payload) = await client.ReadFrameAsync(TimeSpan.FromSeconds(10));
            if (opcode == 0x8)
            {
                Assert.Equal(1002, (payload[0] << 8) | payload[1]);
                if (NothingFollowsAProtocolErrorsClose)
                {
                    var after = await FrameAfterCloseAsync(client);
                    Assert.True(after is null, $"a frame followed the close: opcode {after?.Opcode}, {after?.Payload.Length} bytes");
                }

                return;
            }

            // Whole messages, in order, before the close.
            using var frame = JsonDocument.Parse(payload);
            foreach (var item in frame.RootElement.ValueKind == JsonValueKind.Array ? frame.RootElement.EnumerateArray().ToList() : [frame.RootElement])
            {
                Assert.Equal(++messages, item.GetProperty("seq").GetInt64());
            }

            Assert.InRange(messages, 0, Queued);
        }

        Assert.Fail("no close frame in 10,000 frames");
    }

    [Fact]
    public async Task SseStream_ThatIsNeverRead_IsCutWith50301_OnceItsBytesPassTheBudget()
    {
        var node = _server.Services.GetRequiredService<IngressNode>();
        var cutBefore = node.SlowConsumerDisconnects;
        using var stream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
        await stream.ConnectAsync(IPAddress.Loopback, _server.BaseAddress.Port).WaitAsync(TestSocket.DefaultTimeout);
        var get = $"GET /v1/sse?channel=sse-big&key={Uri.EscapeDataString(RelayServer.Key)} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
        await stream.SendAsync(Encoding.ASCII.GetBytes(get)).WaitAsync(TestSocket.DefaultTimeout);

        // Let the stream subscribe (its first bytes arrive), then publish 30 MB at it: fewer than the 1,024 frames the
        // old limit counted, twice the 16 MiB budget with room for what the kernel buffers.
        var first = new byte[1];
        Assert.Equal(1, await stream.ReceiveAsync(first).WaitAsync(TestSocket.DefaultTimeout));
        for (var i = 0; i < 50 && node.SlowConsumerDisconnects == cutBefore; i++)
        {
            await PublishLargeAsync("sse-big", 10);
        }

        Assert.True(node.SlowConsumerDisconnects > cutBefore, "an SSE stream holding 30 MB unread was never cut");

        // What it reads at last ends with the disconnect event (in one chunk of the chunked response).
        var text = new StringBuilder();
        var buffer = new byte[256 * 1024];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        Match disconnect;
        while (!(disconnect = DisconnectEvent().Match(text.ToString())).Success)
        {
            var count = await stream.ReceiveAsync(buffer, cts.Token);
            Assert.True(count > 0, "the stream ended without a disconnect event");
            text.Append(Encoding.UTF8.GetString(buffer, 0, count));
            if (text.Length > 1024 * 1024)
            {
                text.Remove(0, text.Length - (64 * 1024));
            }
        }

        Assert.Equal(50301, JsonDocument.Parse(disconnect.Groups[1].Value).RootElement.GetProperty("code").GetInt32());
    }

    [GeneratedRegex("event: disconnect\ndata: (\\{[^\\n]*\\})\n\n")]
    private static partial Regex DisconnectEvent();

    private static long Heap()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    private static async Task<JsonElement> ReadUntilDisconnectAsync(RawWebSocket socket)
    {
        for (var i = 0; i < 10_000; i++)
        {
            var frame = await socket.ReadJsonAsync(TimeSpan.FromSeconds(10));
            foreach (var item in frame.ValueKind == JsonValueKind.Array ? frame.EnumerateArray().ToList() : [frame])
            {
                if (item.GetProperty("type").GetString() == "disconnect")
                {
                    return item;
                }
            }
        }

        throw new InvalidOperationException("no disconnect in 10,000 frames");
    }

    /// <summary>The frame a peer sent after its close frame, or null when the stream ended there.</summary>
    private static async Task<(int Opcode, byte[] Payload)?> FrameAfterCloseAsync(RawWebSocket socket)
    {
        try
        {
            return await socket.ReadFrameAsync(TimeSpan.FromSeconds(10));
        }
        catch (IOException)
        {
            return null;
        }
    }

    private async Task PublishLargeAsync(string channel, int count)
    {
        // Ten per request keeps each body under the 1 MiB HTTP limit.
        var one = JsonSerializer.Serialize(new { data = new string('x', PayloadBytes - 2) });
        for (var sent = 0; sent < count; sent += 10)
        {
            var body = "[" + string.Join(",", Enumerable.Repeat(one, Math.Min(10, count - sent))) + "]";
            using var response = await _http.PostAsync($"v1/channels/{channel}/messages", new StringContent(body, Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        }
    }

    private async Task PublishSmallAsync(string channel, int data)
    {
        using var response = await _http.PostAsync($"v1/channels/{channel}/messages", new StringContent(JsonSerializer.Serialize(new { data }), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
    }
}
