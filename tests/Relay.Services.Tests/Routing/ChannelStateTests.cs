using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Routing;
using Relay.Routing.Channels;
using Relay.Testing;

namespace Relay.Services.Tests.Routing;

/// <summary>
/// What routing keeps (in-memory bus): reads of channels nobody published to keep nothing, over every way in, and an
/// empty channel's epoch holds from its first read to its first message.
/// </summary>
public sealed class ChannelStateTests : IAsyncLifetime
{
    private readonly ManualClock _clock = new();
    private RelayServer _server = null!;
    private HttpClient _http = null!;

    private ChannelAuthority Authority => _server.Services.GetRequiredService<ChannelAuthority>();

    public async Task InitializeAsync()
    {
        // No rate limits here: these tests are about what a request leaves behind once it is let through.
        _server = await RelayServer.StartAsync(
            new Dictionary<string, string?>
            {
                ["Relay:Ingress:ReadRatePerSecond"] = "1000000",
                ["Relay:Ingress:ReadBurst"] = "1000000",
                ["Relay:Ingress:PublishRatePerSecond"] = "1000000",
            },
            services => services.AddSingleton<TimeProvider>(_clock));
        _http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task Reads_OfManyNeverPublishedChannels_OverWebSocket_KeepNoRoutingState()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "scanner"));
        var before = Authority.ChannelCount;

        // 20,000 history reads, 10,000 subscribe/unsubscribe pairs and 10,000 presence gets, each on a new name.
        await FloodAsync(socket, 20_000, static (i, r) => $$"""{"type":"history","ref":{{r}},"channel":"h:{{i}}","limit":1}""");
        await FloodAsync(socket, 10_000, static (i, r) => $$"""{"type":"subscribe","ref":{{r}},"channel":"s:{{i}}"},{"type":"unsubscribe","ref":{{r + 1}},"channel":"s:{{i}}"}""", repliesPer: 2);
        await FloodAsync(socket, 10_000, static (i, r) => $$"""{"type":"presence","ref":{{r}},"channel":"p:{{i}}","action":"get"}""");
        await FloodAsync(socket, 1_000, static (i, r) => $$"""{"type":"presence","ref":{{r}},"channel":"l:{{i}}","action":"leave"}""");

        // Each used to hold a channel state for minutes (~330 B each, ~65 MB for 200,000 names).
        Assert.Equal(before, Authority.ChannelCount);
    }

    [Fact]
    public async Task HistoryOverHttp_OfManyNeverPublishedChannels_KeepsNoRoutingState()
    {
        var before = Authority.ChannelCount;
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < 5_000)
            {
                using var response = await _http.GetAsync($"v1/channels/g:{i}/messages?limit=1");
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                using var presence = await _http.GetAsync($"v1/channels/g:{i}/presence");
                Assert.Equal(HttpStatusCode.OK, presence.StatusCode);
            }
        }))).WaitAsync(TimeSpan.FromMinutes(2));

        Assert.Equal(before, Authority.ChannelCount);
    }

    [Fact]
    public async Task SseStreams_OnManyNeverPublishedChannels_KeepNoRoutingState()
    {
        var before = Authority.ChannelCount;
        for (var stream = 0; stream < 20; stream++)
        {
            var query = string.Join("&", Enumerable.Range(stream * 250, 250).Select(static i => $"channel=e:{i}"));
            await using var sse = await SseTestClient.OpenAsync(new Uri(_server.BaseAddress, $"v1/sse?key={Uri.EscapeDataString(RelayServer.Key)}&{query}"));
            Assert.Equal(HttpStatusCode.OK, sse.Status);
            await sse.ReadAsync();
        }

        Assert.Equal(before, Authority.ChannelCount);
    }

    [Fact]
    public async Task EmptyChannel_ReadThenPublished_KeepsTheEpochItsReadersSaw()
    {
        await using var subscriber = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "fresh" });
        var epoch = subscribed.GetProperty("epoch").GetString();
        Assert.Equal(0, subscribed.GetProperty("seq").GetInt64());
        Assert.Equal(epoch, (await HistoryAsync("fresh")).GetProperty("epoch").GetString());

        await PublishAsync("fresh", "first");
        var message = await subscriber.ReceiveMessageAsync();
        Assert.Equal((epoch, 1L), (message.GetProperty("epoch").GetString(), message.GetProperty("seq").GetInt64()));

        // A client that saw the empty channel and went away recovers what came after.
        await using var returning = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        var resumed = await returning.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "fresh", ["since"] = new { epoch, seq = 0 } });
        Assert.True(resumed.GetProperty("recovered").GetBoolean(), resumed.GetRawText());
        Assert.Equal("first", (await returning.ReceiveMessageAsync()).GetProperty("data").GetString());
    }

    [Fact]
    public async Task Sweep_ForgetsAChannelWithMessages_WhichThenGetsANewEpoch_WhileAnEmptyOneKeepsItsEpoch()
    {
        await PublishAsync("old", "one");
        var first = (await HistoryAsync("old")).GetProperty("epoch").GetString();
        var quiet = (await HistoryAsync("quiet")).GetProperty("epoch").GetString();

        // Past the history TTL and the idempotency window, the sweep forgets the channel and its seqs (the host's own
        // 30 s sweep may get there first: either way the channel is gone).
        var channels = Authority.ChannelCount;
        _clock.Advance(TimeSpan.FromMinutes(10));
        Authority.Sweep();
        Assert.Equal(channels - 1, Authority.ChannelCount);
        var after = await HistoryAsync("old");
        Assert.NotEqual(first, after.GetProperty("epoch").GetString());
        Assert.Equal(0, after.GetProperty("messages").GetArrayLength());

        // An empty channel had nothing to forget: its readers keep their epoch (unless it shares old's generation
        // stripe, one chance in 65,536).
        Assert.Equal(quiet, (await HistoryAsync("quiet")).GetProperty("epoch").GetString());

        // A client still holding the old epoch is told it may have missed messages; the new epoch starts at seq 1.
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        var resumed = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "old", ["since"] = new { epoch = first, seq = 1 } });
        Assert.False(resumed.GetProperty("recovered").GetBoolean());
        await PublishAsync("old", "two");
        var message = await socket.ReceiveMessageAsync();
        Assert.Equal((after.GetProperty("epoch").GetString(), 1L), (message.GetProperty("epoch").GetString(), message.GetProperty("seq").GetInt64()));
    }

    [Fact]
    public async Task History_PastItsTtl_LosesEachMessageAsItExpires_AlsoAfterSizeTrims()
    {
        // The default namespace keeps 200 messages for 5 minutes.
        var channel = "ttl-" + Guid.NewGuid().ToString("N")[..8];
        await PublishAsync(channel, "a");
        await PublishAsync(channel, "b");
        _clock.Advance(TimeSpan.FromMinutes(3));
        await PublishAsync(channel, "c");
        Assert.Equal(["a", "b", "c"], await HistoryDataAsync(channel));

        _clock.Advance(TimeSpan.FromMinutes(2) + TimeSpan.FromSeconds(1));
        Assert.Equal(["c"], await HistoryDataAsync(channel));
        _clock.Advance(TimeSpan.FromMinutes(3));
        Assert.Empty(await HistoryDataAsync(channel));

        // 250 messages: the first 50 leave for size, the rest for age, then the one published a minute later.
        await PublishBatchAsync(channel, Enumerable.Range(0, 250).Select(static i => $"old-{i}"));
        Assert.Equal(200, (await HistoryDataAsync(channel)).Count);
        _clock.Advance(TimeSpan.FromMinutes(1));
        await PublishAsync(channel, "new");
        _clock.Advance(TimeSpan.FromMinutes(4) + TimeSpan.FromSeconds(1));
        Assert.Equal(["new"], await HistoryDataAsync(channel));
        _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Empty(await HistoryDataAsync(channel));
    }

    [Fact]
    public async Task HistoryPage_WithAByteBudget_HoldsTheNewestThatFit_AndSaysTruncated()
    {
        // 100 messages of 1,000 characters of data (1,002 bytes as JSON).
        var channel = "budget-" + Guid.NewGuid().ToString("N")[..8];
        await PublishBatchAsync(channel, Enumerable.Range(1, 100).Select(static i => i.ToString("D4", CultureInfo.InvariantCulture) + new string('x', 996)));

        var page = Assert.IsType<HistoryReply>(await Authority.HandleAsync(new HistoryRequest(RelayServer.AppId, channel, 1000, MaxBytes: 30_000), CancellationToken.None));
        Assert.True(page.Truncated);
        Assert.Equal(Enumerable.Range(72, 29).Select(static i => (long)i), page.Messages.Select(static m => m.Seq));

        var rest = Assert.IsType<HistoryReply>(await Authority.HandleAsync(new HistoryRequest(RelayServer.AppId, channel, 1000, Before: 72, MaxBytes: 80_000), CancellationToken.None));
        Assert.False(rest.Truncated);
        Assert.Equal(71, rest.Messages.Count);

        // At least one, however small the budget; none left out when the limit ends the page first.
        var one = Assert.IsType<HistoryReply>(await Authority.HandleAsync(new HistoryRequest(RelayServer.AppId, channel, 1000, MaxBytes: 1), CancellationToken.None));
        Assert.Equal((true, 100L), (one.Truncated, one.Messages.Single().Seq));
        var limited = Assert.IsType<HistoryReply>(await Authority.HandleAsync(new HistoryRequest(RelayServer.AppId, channel, 3, MaxBytes: 30_000), CancellationToken.None));
        Assert.Equal((false, 3), (limited.Truncated, limited.Messages.Count));
    }

    private async Task<List<string>> HistoryDataAsync(string channel)
    {
        using var response = await _http.GetAsync($"v1/channels/{channel}/messages?limit=1000");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return [.. body.RootElement.GetProperty("messages").EnumerateArray().Select(static m => m.GetProperty("data").GetString()!)];
    }

    private async Task PublishBatchAsync(string channel, IEnumerable<string> data)
    {
        foreach (var chunk in data.Chunk(100))
        {
            using var response = await _http.PostAsync($"v1/channels/{channel}/messages", new StringContent(JsonSerializer.Serialize(chunk.Select(static d => new { data = d })), Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        }
    }

    private async Task PublishAsync(string channel, string data)
    {
        using var response = await _http.PostAsync($"v1/channels/{channel}/messages", new StringContent(JsonSerializer.Serialize(new { data }), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
    }

    private async Task<JsonElement> HistoryAsync(string channel)
    {
        using var response = await _http.GetAsync($"v1/channels/{channel}/messages");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    /// <summary>Sends <paramref name="names"/> requests in frames of up to 100, a bounded window ahead of the replies; all must be ok.</summary>
    private static async Task FloodAsync(TestSocket socket, int names, Func<int, int, string> request, int repliesPer = 1)
    {
        var perFrame = 100 / repliesPer;
        var expected = names * repliesPer;
        var received = 0;
        var reader = Task.Run(async () =>
        {
            while (Volatile.Read(ref received) < expected)
            {
                var reply = await socket.ReceiveAsync(TimeSpan.FromSeconds(30));
                Assert.True(reply.GetProperty("type").GetString() == "ok", reply.GetRawText());
                Interlocked.Increment(ref received);
            }
        });

        var nextRef = 1;
        for (var first = 0; first < names; first += perFrame)
        {
            // At most ten frames ahead of the replies, so the server never sees this client as a slow consumer.
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while ((first * repliesPer) - Volatile.Read(ref received) > 10 * 100)
            {
                Assert.True(DateTime.UtcNow < deadline && !reader.IsFaulted, "replies stopped coming");
                await Task.Delay(1);
            }

            var frame = new StringBuilder("[");
            for (var i = first; i < Math.Min(first + perFrame, names); i++)
            {
                frame.Append(i == first ? "" : ",").Append(request(i, nextRef));
                nextRef += repliesPer;
            }

            await socket.SendTextAsync(frame.Append(']').ToString());
        }

        await reader.WaitAsync(TimeSpan.FromMinutes(2));
        Assert.Equal(expected, received);
    }
}
