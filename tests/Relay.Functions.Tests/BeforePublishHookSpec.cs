using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Functions.Tests;

/// <summary>
/// The before-publish hook over real sockets: a hook (real Kestrel on loopback) that rejects, transforms, hangs or
/// answers garbage, seen by a WebSocket publisher, a subscriber and history. Runs on the in-memory and the Redis bus.
/// </summary>
public abstract class BeforePublishHookSpec : IAsyncLifetime
{
    // Long enough that the publishes on other channels below finish well inside it on a busy 2-core machine.
    private static readonly TimeSpan HangTimeout = TimeSpan.FromSeconds(3);

    private LoopbackServer _hook = null!;
    private HttpClient _http = null!;

    internal RelayServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        _hook = await LoopbackServer.StartAsync(HookBehaviour.HandleAsync);
        var settings = new Dictionary<string, string?>
        {
            ["Relay:Ingress:PublishRatePerSecond"] = "1000000",
            ["Relay:Ingress:PublishBurst"] = "1000000",
        };
        foreach (var (ns, path, failure, timeout) in new[]
        {
            ("mod", "mod", "Closed", "00:00:10"),
            ("upper", "upper", "Closed", "00:00:10"),
            ("open", "hang", "Open", HangTimeout.ToString()),
            ("closed", "hang", "Closed", HangTimeout.ToString()),
            ("junk", "junk", "Closed", "00:00:10"),
            ("junkopen", "junk", "Open", "00:00:10"),
            ("rate", "rate", "Closed", "00:00:10"),
        })
        {
            settings[$"Relay:Functions:Namespaces:{ns}:BeforePublish:Target"] = new Uri(_hook.Url, path).ToString();
            settings[$"Relay:Functions:Namespaces:{ns}:BeforePublish:OnFailure"] = failure;
            settings[$"Relay:Functions:Namespaces:{ns}:BeforePublish:Timeout"] = timeout;
        }

        foreach (var (key, value) in await BusSettingsAsync())
        {
            settings[key] = value;
        }

        Server = await RelayServer.StartAsync(settings);
        _http = new HttpClient { BaseAddress = Server.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await Server.DisposeAsync();
        await _hook.DisposeAsync();
        await DisposeBusAsync();
    }

    [Fact]
    public async Task BeforePublish_HookRejects_PublisherGetsForbiddenAndNothingIsDeliveredOrKept()
    {
        await using var subscriber = await SubscribedAsync("mod:room");
        await using var publisher = await ConnectAsync();

        var refused = await PublishAsync(publisher, "mod:room", "spam");
        Assert.Equal("error", refused.GetProperty("type").GetString());
        Assert.Equal(40300, refused.GetProperty("code").GetInt32());
        Assert.Contains("spam is not allowed here", refused.GetProperty("message").GetString(), StringComparison.Ordinal);

        using var overHttp = await _http.PostAsJsonAsync("v1/channels/mod:room/messages", new { data = "spam" });
        Assert.Equal(HttpStatusCode.Forbidden, overHttp.StatusCode);
        Assert.Equal(40300, (await overHttp.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetInt32());

        // The first message the subscriber sees, and the only one history holds, is the one the hook let through.
        var accepted = await PublishAsync(publisher, "mod:room", "fine");
        Assert.Equal(1, accepted.GetProperty("seq").GetInt64());
        var delivered = await subscriber.ReceiveMessageAsync();
        Assert.Equal(("fine", 1L), (delivered.GetProperty("data").GetString(), delivered.GetProperty("seq").GetInt64()));
        var (_, history) = await HistoryPages.ReadAllAsync(publisher, "mod:room");
        Assert.Equal([(1L, "fine")], history);
    }

    [Fact]
    public async Task BeforePublish_HookTransforms_SubscribersAndHistorySeeTheNewDataAndName()
    {
        await using var subscriber = await SubscribedAsync("upper:room");
        await using var publisher = await ConnectAsync();

        Assert.Equal("ok", (await PublishAsync(publisher, "upper:room", "hello")).GetProperty("type").GetString());
        using var overHttp = await _http.PostAsJsonAsync("v1/channels/upper:room/messages", new[] { new { name = "n", data = "two" }, new { name = "n", data = "three" } });
        Assert.Equal(HttpStatusCode.Created, overHttp.StatusCode);

        foreach (var expected in new[] { "HELLO", "TWO", "THREE" })
        {
            var message = await subscriber.ReceiveMessageAsync();
            Assert.Equal(expected, message.GetProperty("data").GetString());
            Assert.Equal("shout", message.GetProperty("name").GetString());
        }

        var (_, history) = await HistoryPages.ReadAllAsync(publisher, "upper:room");
        Assert.Equal([(1L, "HELLO"), (2L, "TWO"), (3L, "THREE")], history);
    }

    [Fact]
    public async Task BeforePublish_HookHangs_AnsweredWithinTimeoutOpenDeliversClosedRefusesOtherChannelsFlow()
    {
        await using var subscriber = await SubscribedAsync("open:room");
        await using var publisher = await ConnectAsync();
        await using var closedPublisher = await ConnectAsync();
        await using var behind = await ConnectAsync();
        await using var other = await ConnectAsync();

        // One request in flight per test socket: its reader is not shared.
        var clock = Stopwatch.StartNew();
        var open = PublishAsync(publisher, "open:room", "hang");
        var closed = PublishAsync(closedPublisher, "closed:room", "hang");

        // A publish on the hanging channel waits in its line, and goes right after the hanging one is decided.
        await Task.Delay(100);
        var queued = PublishAsync(behind, "open:room", "after");

        // Meanwhile other channels, hooked or not, are answered at once: their hook calls and lines are their own.
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("ok", (await PublishAsync(other, i % 2 == 0 ? "free:room" : "mod:other", "meanwhile")).GetProperty("type").GetString());
        }

        var othersDone = clock.Elapsed;
        Assert.False(open.IsCompleted, $"the hanging publish was answered after {othersDone} already");

        var openReply = await open.WaitAsync(TimeSpan.FromSeconds(20));
        var openAt = clock.Elapsed;
        var closedReply = await closed.WaitAsync(TimeSpan.FromSeconds(20));
        var closedAt = clock.Elapsed;

        Assert.Equal("ok", openReply.GetProperty("type").GetString());
        Assert.Equal("error", closedReply.GetProperty("type").GetString());
        Assert.Equal(50300, closedReply.GetProperty("code").GetInt32());
        Assert.InRange(openAt, HangTimeout * 0.9, HangTimeout + TimeSpan.FromSeconds(8));
        Assert.InRange(closedAt, HangTimeout * 0.9, HangTimeout + TimeSpan.FromSeconds(8));

        var queuedReply = await queued.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(2, queuedReply.GetProperty("seq").GetInt64());
        Assert.InRange(clock.Elapsed, HangTimeout * 0.9, HangTimeout + TimeSpan.FromSeconds(8));

        // Fail-open: published as sent, and the one behind it after it.
        var delivered = await subscriber.ReceiveMessageAsync();
        Assert.Equal(("hang", 1L), (delivered.GetProperty("data").GetString(), delivered.GetProperty("seq").GetInt64()));
        var next = await subscriber.ReceiveMessageAsync();
        Assert.Equal(("after", 2L), (next.GetProperty("data").GetString(), next.GetProperty("seq").GetInt64()));
        var (_, closedHistory) = await HistoryPages.ReadAllAsync(publisher, "closed:room");
        Assert.Empty(closedHistory);
    }

    [Theory]
    [InlineData("text")]
    [InlineData("unknown")]
    [InlineData("count")]
    [InlineData("status")]
    public async Task BeforePublish_HookAnswersGarbage_ClosedRefusesOpenPublishesAsSent(string garbage)
    {
        await using var publisher = await ConnectAsync();

        var closed = await PublishAsync(publisher, "junk:" + garbage, garbage);
        Assert.Equal(50300, closed.GetProperty("code").GetInt32());
        var open = await PublishAsync(publisher, "junkopen:" + garbage, garbage);
        Assert.Equal("ok", open.GetProperty("type").GetString());

        Assert.Empty((await HistoryPages.ReadAllAsync(publisher, "junk:" + garbage)).Messages);
        Assert.Equal([(1L, garbage)], (await HistoryPages.ReadAllAsync(publisher, "junkopen:" + garbage)).Messages);
    }

    [Fact]
    public async Task BeforePublish_ThousandsPipelinedThroughAHook_NoneLostOrderKeptPerChannel()
    {
        const int channels = 6;
        const int perChannel = 500;
        var subscribers = new List<TestSocket>();
        try
        {
            for (var c = 0; c < channels; c++)
            {
                subscribers.Add(await SubscribedAsync($"rate:{c}"));
            }

            // Each channel has one publisher that sends without waiting for acks: the hook answers in random order.
            var publishes = Enumerable.Range(0, channels).Select(async c =>
            {
                await using var publisher = await ConnectAsync();
                for (var i = 0; i < perChannel; i++)
                {
                    await publisher.SendAsync(new Dictionary<string, object?> { ["type"] = "publish", ["channel"] = $"rate:{c}", ["data"] = $"m{i}", ["ref"] = i });
                }

                var seqs = new long[perChannel];
                for (var i = 0; i < perChannel; i++)
                {
                    var reply = await publisher.ReceiveMatchingAsync(static e => e.GetProperty("type").GetString() is "ok" or "error", TimeSpan.FromSeconds(60));
                    Assert.Equal("ok", reply.GetProperty("type").GetString());
                    seqs[reply.GetProperty("ref").GetInt32()] = reply.GetProperty("seq").GetInt64();
                }

                return seqs;
            }).ToList();
            var acknowledged = await Task.WhenAll(publishes).WaitAsync(TimeSpan.FromSeconds(120));

            for (var c = 0; c < channels; c++)
            {
                // A message's seq is its place in its publisher's order.
                Assert.Equal(Enumerable.Range(1, perChannel).Select(static s => (long)s), acknowledged[c]);
                for (var i = 0; i < perChannel; i++)
                {
                    var message = await subscribers[c].ReceiveMessageAsync(TimeSpan.FromSeconds(30));
                    Assert.Equal(($"m{i}!", i + 1L), (message.GetProperty("data").GetString(), message.GetProperty("seq").GetInt64()));
                }

                var (_, history) = await HistoryPages.ReadAllAsync(subscribers[c], $"rate:{c}");
                Assert.Equal(Math.Min(perChannel, 200), history.Count);
                Assert.Equal($"m{perChannel - 1}!", history[^1].Data);
            }
        }
        finally
        {
            foreach (var subscriber in subscribers)
            {
                await subscriber.DisposeAsync();
            }
        }
    }

    private protected abstract Task<Dictionary<string, string?>> BusSettingsAsync();

    private protected virtual Task DisposeBusAsync() => Task.CompletedTask;

    private Task<TestSocket> ConnectAsync() => TestSocket.ConnectAsync(Server.RealtimeUriWithKey(RelayServer.Key));

    private async Task<TestSocket> SubscribedAsync(string channel)
    {
        var socket = await ConnectAsync();
        var reply = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
        Assert.Equal("ok", reply.GetProperty("type").GetString());
        return socket;
    }

    private static Task<JsonElement> PublishAsync(TestSocket socket, string channel, string data) =>
        socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["data"] = data });
}
