using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// What one client does with its own socket (what it sends, when it reads) never holds up another client's output,
/// and a reader that pauses on a busy channel and catches up is not taken for a dead one. Spoken byte by byte
/// (<see cref="RawWebSocket"/>), since control frames and when pings are answered are the point.
/// </summary>
public abstract class SendPathSpec : IAsyncLifetime
{
    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        var settings = new Dictionary<string, string?>
        {
            // Three seconds: a reader paused for five (longer than one interval, shorter than two) on a busy channel
            // is due a ping while its transport is full, and catches up well before a ping sent then could expire.
            ["Relay:Ingress:HeartbeatMs"] = "3000",

            // Room for a reader paused for seconds on a busy channel: the heartbeat is under test, not the budget.
            ["Relay:Ingress:SendQueueBytes"] = "268435456"
        };
        Configure(settings);
        ConfigureBus(settings);
        _server = await StartServerAsync(settings);
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

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
    public async Task PublisherStreamingPings_DoesNotHoldBackDeliveryToOthers()
    {
        await using var subscriber = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "held" });

        // The publisher sends one publish in the middle of a stream of empty pings, as fast as the server takes them,
        // and reads everything it is sent (its pongs) so that nothing of its own ever backs up.
        await using var publisher = await RawWebSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var pings = new byte[6 * 100_000];
        for (var i = 0; i < 100_000; i++)
        {
            RawWebSocket.Frame(0x9, []).CopyTo(pings, i * 6);
        }

        var published = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var draining = Task.Run(async () =>
        {
            // Reads in bulk: a reader slower than the server's pongs would back them up and slow the server down.
            var buffer = new byte[256 * 1024];
            while (await publisher.Stream.ReadAsync(buffer, stop.Token) > 0)
            {
            }
        });
        var streaming = Task.Run(async () =>
        {
            await publisher.Stream.WriteAsync(pings.AsMemory(0, 600), stop.Token);
            await publisher.Stream.WriteAsync(RawWebSocket.Frame(0x1, """{"type":"publish","channel":"held","data":"once","ref":1}"""u8), stop.Token);
            published.TrySetResult();
            while (!stop.IsCancellationRequested)
            {
                await publisher.Stream.WriteAsync(pings, stop.Token);
            }
        });

        try
        {
            // Before the fix the message and the subscriber's own pong waited until the server happened to catch up with the pings: 1-4 s here, 20 s in
            // the review. Now the publisher's batch ends within 64 control frames; the rest is scheduling.
            await published.Task.WaitAsync(TestSocket.DefaultTimeout);
            var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromMilliseconds(750));
            Assert.Equal("once", message.GetProperty("data").GetString());
            var reference = subscriber.NextRef();
            await subscriber.SendTextAsync($$"""{"type":"ping","ref":{{reference}}}""");
            var pong = await subscriber.ReceiveMatchingAsync(e => e.TryGetProperty("ref", out var r) && r.GetInt32() == reference, TimeSpan.FromMilliseconds(750));
            Assert.Equal("pong", pong.GetProperty("type").GetString());
            Assert.False(streaming.IsCompleted, "the ping stream ended early: " + streaming.Exception?.GetBaseException().Message);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(draining, streaming).ContinueWith(static _ => { }, TaskScheduler.Default).WaitAsync(TestSocket.DefaultTimeout);
        }
    }

    [Fact]
    public async Task ReaderPausedOnBusyChannel_IsPingedOnceItCatchesUp_AndStaysConnected()
    {
        // A small receive buffer: the server's sends back up as soon as the reader stops reading.
        await using var reader = await RawWebSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key), receiveBufferBytes: 4096);
        await reader.SendTextAsync("""{"type":"subscribe","channel":"busy","ref":1}""");
        Assert.Equal("ok", (await reader.ReadJsonAsync()).GetProperty("type").GetString());

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        var body = "[" + string.Join(",", Enumerable.Repeat(JsonSerializer.Serialize(new { data = new string('b', 1000) }), 100)) + "]";
        var published = 0;
        var publishing = Task.Run(async () =>
        {
            // About 4 MB/s for as long as the test runs: the socket buffers are full within a second of the pause.
            while (!stop.IsCancellationRequested)
            {
                using var response = await http.PostAsync("v1/channels/busy/messages", new StringContent(body, Encoding.UTF8, "application/json"), stop.Token);
                Assert.Equal(HttpStatusCode.Created, response.StatusCode);
                Interlocked.Add(ref published, 100);
                await Task.Delay(25, stop.Token);
            }
        });

        try
        {
            // Paused past one heartbeat: when the ping fell due the server could not send it, its sends being full.
            await Task.Delay(TimeSpan.FromSeconds(5));
            Assert.True(Volatile.Read(ref published) > 5000, $"the channel was not busy: {published} messages published");

            // Catching up, answering every ping: it must be pinged (it has been quiet for seconds) and never cut.
            // Before the fix the unsent ping counted as unanswered and the reader was dropped two intervals after
            // its last frame, 6-7 s in, without ever having been pinged.
            var pinged = 0;
            var messages = 0;
            var readUntil = DateTime.UtcNow.AddSeconds(6);
            while (DateTime.UtcNow < readUntil)
            {
                int opcode;
                byte[] payload;
                try
                {
                    (opcode, payload) = await reader.ReadFrameAsync(TimeSpan.FromSeconds(5));
                }
                catch (Exception ex) when (ex is IOException or EndOfStreamException or SocketException)
                {
                    Assert.Fail($"the reader was dropped after catching up ({messages} messages read, {pinged} pings): {ex.Message}");
                    return;
                }

                Assert.NotEqual(0x8, opcode);
                if (opcode == 0x9)
                {
                    pinged++;
                    await reader.SendFrameAsync(0xA, payload);
                }
                else
                {
                    messages++;
                }
            }

            Assert.True(pinged >= 1, $"never pinged in 6 s of reading after {messages} messages");
        }
        finally
        {
            await stop.CancelAsync();
            await publishing.ContinueWith(static _ => { }, TaskScheduler.Default).WaitAsync(TestSocket.DefaultTimeout);
        }
    }
}
