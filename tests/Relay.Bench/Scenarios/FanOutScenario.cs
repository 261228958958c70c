using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using Relay.Bench.Load;
using Relay.Bench.Targets;

namespace Relay.Bench.Scenarios;

/// <summary>How the publisher is paced.</summary>
internal enum PublishPacing
{
    /// <summary>A window of messages not yet delivered to each channel's last subscriber (the probe).</summary>
    ProbeWindow,

    /// <summary>A window of publishes not yet acknowledged by the server.</summary>
    AckWindow,
}

/// <summary>
/// One publishing scenario. <see cref="RatePerSecond"/> 0 publishes as fast as the window allows; <see cref="OverHttp"/>
/// publishes with POST instead of the WebSocket (Relay only: the peers have no HTTP publish).
/// </summary>
internal sealed record FanOutSpec(
    string Scenario,
    int Channels,
    int SubscribersPerChannel,
    int RatePerSecond,
    int Window,
    int PayloadBytes,
    TimeSpan Warmup,
    TimeSpan Duration,
    PublishPacing Pacing = PublishPacing.ProbeWindow,
    bool OverHttp = false);

/// <summary>
/// Subscribers on channels, one publisher, deliveries counted and timed by every subscriber. Covers fan-out (one
/// channel, many subscribers), many channels (few subscribers each), and publish throughput (ack-paced, one subscriber).
/// </summary>
internal static class FanOutScenario
{
    public static async Task<ScenarioResult> RunAsync(Target target, FanOutSpec spec, BenchEnvironment environment)
    {
        var progress = new Progress($"{spec.Scenario}/{target.Name}");
        progress.Say("starting the server");
        await using var running = await target.StartAsync(environment).ConfigureAwait(false);
        var recorder = new LatencyRecorder();
        var pacer = new Pacer(spec.Window);
        var total = spec.Channels * spec.SubscribersPerChannel;
        string Channel(int c) => $"bench-{spec.Scenario}-{c}";

        var subscribers = await Fleet.ConnectAsync(
            target,
            running.WebSocketUri,
            total,
            i => Channel(i % spec.Channels),
            i =>
            {
                // The last subscriber of each channel is its probe: its deliveries open the publishing window.
                var isProbe = spec.Pacing == PublishPacing.ProbeWindow && i >= total - spec.Channels;
                return new StreamScanner(target.Tokens, isProbe ? stamp => { recorder.Record(stamp); pacer.OnAcknowledged(); } : recorder.Record);
            },
            progress).ConfigureAwait(false);

        try
        {
            var templates = Enumerable.Range(0, spec.Channels)
                .Select(c => target.PublishTemplate(Channel(c), spec.PayloadBytes, wantAck: spec.Pacing == PublishPacing.AckWindow))
                .ToArray();
            using var stop = new CancellationTokenSource();
            Task publishing;
            BenchSocket? publisherSocket = null;
            if (spec.OverHttp)
            {
                publishing = PublishOverHttpAsync(running, spec, pacer, Channel, stop.Token);
            }
            else
            {
                var bursts = new Queue<int>();
                var acksEachPublish = target.AcksEachPublish;
                var scanner = new StreamScanner(target.Tokens, onAcks: spec.Pacing != PublishPacing.AckWindow ? null : acks =>
                {
                    if (acksEachPublish)
                    {
                        pacer.OnAcknowledged(acks);
                        return;
                    }

                    // A ping after each burst; its pong confirms the whole burst.
                    long confirmed = 0;
                    lock (bursts)
                    {
                        for (var k = 0; k < acks && bursts.Count > 0; k++)
                        {
                            confirmed += bursts.Dequeue();
                        }
                    }

                    pacer.OnAcknowledged(confirmed);
                });
                publisherSocket = await BenchSocket.ConnectAsync(running.WebSocketUri, scanner, null, CancellationToken.None).ConfigureAwait(false);
                await target.HandshakeAsync(publisherSocket).ConfigureAwait(false);
                var terminator = spec.Pacing == PublishPacing.AckWindow && !acksEachPublish ? target.BurstTerminator : null;
                publishing = PublishOverWebSocketAsync(publisherSocket, templates, spec, pacer, terminator, bursts, stop.Token);
            }

            progress.Say($"warming up for {spec.Warmup.TotalSeconds:0} s");
            await Task.Delay(spec.Warmup).ConfigureAwait(false);
            ThrowIfFaulted(publishing);

            var delivered0 = subscribers.Sum(s => s.Scanner.Stamps);
            var published0 = pacer.Published;
            var cpu0 = running.Server.CpuTime();
            var clock = Stopwatch.StartNew();
            recorder.Start();
            progress.Say($"measuring for {spec.Duration.TotalSeconds:0} s");
            await Task.Delay(spec.Duration).ConfigureAwait(false);
            var delivered1 = subscribers.Sum(s => s.Scanner.Stamps);
            var published1 = pacer.Published;
            var cpu1 = running.Server.CpuTime();
            var elapsed = clock.Elapsed;
            recorder.Stop();
            await stop.CancelAsync().ConfigureAwait(false);
            await publishing.ConfigureAwait(false);

            // Let everything in flight arrive, then check that every connected subscriber got every message.
            var disconnected = subscribers.Count(s => s.Completion.IsCompleted);
            var expected = pacer.Published * spec.SubscribersPerChannel;
            var drain = Stopwatch.StartNew();
            long deliveredAll;
            while ((deliveredAll = subscribers.Where(s => !s.Completion.IsCompleted).Sum(s => s.Scanner.Stamps)) < expected - (disconnected * pacer.Published) && drain.Elapsed < TimeSpan.FromSeconds(15))
            {
                await Task.Delay(100).ConfigureAwait(false);
            }

            disconnected = subscribers.Count(s => s.Completion.IsCompleted);
            var expectedConnected = pacer.Published * spec.SubscribersPerChannel * (total - disconnected) / total;
            var result = new ScenarioResult
            {
                Scenario = spec.Scenario,
                Target = target.Name,
                DeliveredPerSecond = (delivered1 - delivered0) / elapsed.TotalSeconds,
                PublishedPerSecond = (published1 - published0) / elapsed.TotalSeconds,
                Latency = recorder.Summarize(),
                ServerCpuCores = (cpu1 - cpu0) / elapsed,
                PeakRssBytes = running.Server.PeakRssBytes(),
                Connections = total + 1,
                Lost = Math.Max(0, expectedConnected - subscribers.Where(s => !s.Completion.IsCompleted).Sum(s => s.Scanner.Stamps)),
                Disconnected = disconnected,
            };
            progress.Say($"{result.DeliveredPerSecond:N0} deliveries/s, p50 {result.Latency.P50:0.###} ms, p99 {result.Latency.P99:0.###} ms, lost {result.Lost}, disconnected {result.Disconnected}");
            if (publisherSocket is not null)
            {
                await publisherSocket.DisposeAsync().ConfigureAwait(false);
            }

            return result;
        }
        finally
        {
            await Fleet.CloseAsync(subscribers).ConfigureAwait(false);
        }
    }

    private static void ThrowIfFaulted(Task publishing)
    {
        if (publishing.IsFaulted)
        {
            publishing.GetAwaiter().GetResult();
        }
    }

    private static async Task PublishOverWebSocketAsync(BenchSocket socket, PublishTemplate[] templates, FanOutSpec spec, Pacer pacer, byte[]? terminator, Queue<int> bursts, CancellationToken stop)
    {
        var started = Stopwatch.GetTimestamp();
        long next = 0;
        while (!stop.IsCancellationRequested)
        {
            var count = pacer.Room;
            if (spec.RatePerSecond > 0)
            {
                // Open loop at a fixed rate, still inside the window so a stalled server is not buried.
                var due = (long)(Stopwatch.GetElapsedTime(started).TotalSeconds * spec.RatePerSecond) - next;
                count = (int)Math.Min(count, due);
                if (count <= 0)
                {
                    await Task.Delay(1, CancellationToken.None).ConfigureAwait(false);
                    continue;
                }
            }

            if (count <= 0)
            {
                await pacer.WaitForRoomAsync().ConfigureAwait(false);
                continue;
            }

            if (terminator is not null)
            {
                lock (bursts)
                {
                    bursts.Enqueue(count);
                }
            }

            pacer.OnPublished(count);
            await socket.SendBurstAsync(templates, next, count, terminator).ConfigureAwait(false);
            next += count;
        }
    }

    private static async Task PublishOverHttpAsync(RunningTarget running, FanOutSpec spec, Pacer pacer, Func<int, string> channelOf, CancellationToken stop)
    {
        var baseAddress = running.HttpBase ?? throw new InvalidOperationException("this target has no HTTP publish");
        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = spec.Window, PooledConnectionLifetime = Timeout.InfiniteTimeSpan };
        using var http = new HttpClient(handler) { BaseAddress = baseAddress };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayTarget.AppKey)));
        long sequence = -1;

        // Window concurrent requests, each waiting for its 201 before the next: an ack-paced window over HTTP/1.1.
        var workers = Enumerable.Range(0, spec.Window).Select(async _ =>
        {
            while (!stop.IsCancellationRequested)
            {
                var n = Interlocked.Increment(ref sequence);
                var body = new byte[spec.PayloadBytes + 11];
                "{\"data\":\""u8.CopyTo(body);
                Array.Fill(body, (byte)'x', 9, spec.PayloadBytes);
                Stamp.Write(body.AsSpan(9), Stamp.MinimumSize, Stopwatch.GetTimestamp());
                "\"}"u8.CopyTo(body.AsSpan(9 + spec.PayloadBytes));
                using var content = new ByteArrayContent(body);
                content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                pacer.OnPublished(1);
                using var response = await http.PostAsync($"v1/channels/{channelOf((int)(n % spec.Channels))}/messages", content, CancellationToken.None).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode)
                {
                    throw new InvalidOperationException($"POST messages answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(CancellationToken.None).ConfigureAwait(false)}");
                }

                pacer.OnAcknowledged();
            }
        }).ToArray();
        await Task.WhenAll(workers).ConfigureAwait(false);
    }
}
