using System.Diagnostics;
using System.Globalization;
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
/// publishes with POST instead of the WebSocket (Relay only: the peers have no HTTP publish). With several
/// <see cref="Publishers"/> (WebSocket, <see cref="PublishPacing.AckWindow"/> only) each has a window of its own and
/// publishes round-robin to its share of the channels (channel c belongs to publisher c mod Publishers).
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
    bool OverHttp = false,
    int Publishers = 1);

/// <summary>
/// Subscribers on channels, one or more publishers, deliveries counted and timed by every subscriber. Covers fan-out
/// (one channel, many subscribers), many channels (few subscribers each), publish throughput (ack-paced, to 1 to 100
/// subscribers), and many publishers on many small channels.
/// </summary>
internal static class FanOutScenario
{
    public static async Task<ScenarioResult> RunAsync(Target target, FanOutSpec spec, BenchEnvironment environment)
    {
        if (spec.Publishers < 1 || spec.Publishers > spec.Channels)
        {
            throw new ArgumentException($"{spec.Scenario}: publishers must be 1 to the number of channels ({spec.Channels}), not {spec.Publishers}", nameof(spec));
        }

        if (spec.Publishers > 1 && (spec.OverHttp || spec.Pacing != PublishPacing.AckWindow))
        {
            throw new ArgumentException($"{spec.Scenario}: several publishers need WebSocket publishing with ack-paced windows", nameof(spec));
        }

        var progress = new Progress($"{spec.Scenario}/{target.Name}");
        progress.Say("starting the server");
        await using var running = await target.StartAsync(environment).ConfigureAwait(false);
        var recorder = new LatencyRecorder();
        var pacers = Enumerable.Range(0, spec.Publishers).Select(_ => new Pacer(spec.Window)).ToArray();
        var total = spec.Channels * spec.SubscribersPerChannel;
        string Channel(int c) => $"bench-{spec.Scenario}-{c}";
        long Published() => pacers.Sum(p => p.Published);

        var subscribers = await Fleet.ConnectAsync(
            target,
            running.WebSocketUri,
            total,
            i => Channel(i % spec.Channels),
            i =>
            {
                // The last subscriber of each channel is its probe: its deliveries open the publishing window.
                var isProbe = spec.Pacing == PublishPacing.ProbeWindow && i >= total - spec.Channels;
                return new StreamScanner(target.Tokens, isProbe ? stamp => { recorder.Record(stamp); pacers[0].OnAcknowledged(); } : recorder.Record);
            },
            progress).ConfigureAwait(false);

        var publisherSockets = new List<BenchSocket>();
        try
        {
            using var stop = new CancellationTokenSource();
            var publishing = new List<Task>();
            if (spec.OverHttp)
            {
                publishing.Add(PublishOverHttpAsync(running, spec, pacers[0], Channel, stop.Token));
            }
            else
            {
                for (var p = 0; p < spec.Publishers; p++)
                {
                    var templates = Enumerable.Range(0, spec.Channels)
                        .Where(c => c % spec.Publishers == p)
                        .Select(c => target.Publisher.PublishTemplate(Channel(c), spec.PayloadBytes, wantAck: spec.Pacing == PublishPacing.AckWindow))
                        .ToArray();
                    var (socket, task) = await StartPublisherAsync(target.Publisher, running, spec, pacers[p], templates, stop.Token).ConfigureAwait(false);
                    publisherSockets.Add(socket);
                    publishing.Add(task);
                }
            }

            progress.Say($"warming up for {spec.Warmup.TotalSeconds:0} s");
            await Task.Delay(spec.Warmup).ConfigureAwait(false);
            ThrowIfFaulted(publishing);

            var delivered0 = subscribers.Sum(s => s.Scanner.Stamps);
            var published0 = Published();
            var cpu0 = running.Server.CpuTime();
            var threads0 = running.Server.ThreadCpuTimes();
            var redis0 = await RedisStats.SampleAsync(running.Companion).ConfigureAwait(false);
            var services0 = await ServiceSample.TakeAsync(running.Services).ConfigureAwait(false);
            var clock = Stopwatch.StartNew();
            recorder.Start();
            progress.Say($"measuring for {spec.Duration.TotalSeconds:0} s");
            await Task.Delay(spec.Duration).ConfigureAwait(false);
            var delivered1 = subscribers.Sum(s => s.Scanner.Stamps);
            var published1 = Published();
            var cpu1 = running.Server.CpuTime();
            var threads1 = running.Server.ThreadCpuTimes();
            var elapsed = clock.Elapsed;
            var services1 = await ServiceSample.TakeAsync(running.Services).ConfigureAwait(false);
            var redis = (await RedisStats.SampleAsync(running.Companion).ConfigureAwait(false))?.Since(redis0!);
            recorder.Stop();
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(publishing).ConfigureAwait(false);

            // Let everything in flight arrive, then check that every connected subscriber got every message of its channel.
            var expectedPerSubscriber = ExpectedPerSubscriber(spec, total, pacers);
            var disconnected = subscribers.Count(s => s.Completion.IsCompleted);
            var drain = Stopwatch.StartNew();
            while (Missing(subscribers, expectedPerSubscriber) > 0 && drain.Elapsed < TimeSpan.FromSeconds(15))
            {
                await Task.Delay(100).ConfigureAwait(false);
            }

            disconnected = subscribers.Count(s => s.Completion.IsCompleted);
            var drained = drain.Elapsed;
            var (busiestName, busiestCpu) = Busiest(threads0, threads1);
            var result = new ScenarioResult
            {
                Scenario = spec.Scenario,
                Target = target.Name,
                DeliveredPerSecond = (delivered1 - delivered0) / elapsed.TotalSeconds,
                PublishedPerSecond = (published1 - published0) / elapsed.TotalSeconds,
                Latency = recorder.Summarize(),
                ServerCpuCores = (cpu1 - cpu0) / elapsed,
                BusiestThreadCores = busiestCpu / elapsed,
                BusiestThreadName = busiestName,
                PeakRssBytes = running.Server.PeakRssBytes(),
                Connections = total + spec.Publishers,
                Lost = Missing(subscribers, expectedPerSubscriber),
                Extra = Extra(subscribers, expectedPerSubscriber),
                Disconnected = disconnected,
                Miscount = Miscount(running, subscribers, publisherSockets, expectedPerSubscriber, spec.Channels, drained),
                RedisCommandsPer = redis is null ? null : redis.Commands / (double)(published1 - published0),
                RedisBytesPer = redis is null ? null : (redis.BytesIn + redis.BytesOut) / (double)(published1 - published0),
                RedisCpuMicrosPer = redis is null ? null : redis.Cpu.TotalMicroseconds / (published1 - published0),
                RedisCpuCores = redis is null ? null : redis.Cpu / elapsed,
            };
            if (redis is not null)
            {
                progress.Say($"redis-server: {result.RedisCommandsPer:0.00} commands, {result.RedisBytesPer:N0} bytes and {result.RedisCpuMicrosPer:0.0} µs CPU per publish ({result.RedisCpuCores:0.00} cores); calls per publish: {redis.Busiest(published1 - published0)}");
            }

            if (running.Services.Count > 0)
            {
                progress.Say(ServiceSample.Describe(running.Services, services0, services1, elapsed));
            }

            if (result.Miscount is not null)
            {
                progress.Say($"counts off: {result.Miscount}");
            }

            progress.Say($"{result.DeliveredPerSecond:N0} deliveries/s, {result.PublishedPerSecond:N0} publishes/s, p50 {result.Latency.P50:0.###} ms, p99 {result.Latency.P99:0.###} ms, server CPU {result.ServerCpuCores:0.00} cores (busiest thread {result.BusiestThreadCores:0.00}, {result.BusiestThreadName}), lost {result.Lost}, extra {result.Extra}, disconnected {result.Disconnected}");
            return result;
        }
        finally
        {
            await Fleet.CloseAsync(publisherSockets).ConfigureAwait(false);
            await Fleet.CloseAsync(subscribers).ConfigureAwait(false);
        }
    }

    // What each subscriber should have received by the end: every message published to its channel. A channel's messages
    // come from one publisher, cycling through its channels, so publisher p's n messages give its k-th channel (in
    // the order it cycles) n / count, plus one for the first n mod count.
    private static long[] ExpectedPerSubscriber(FanOutSpec spec, int total, Pacer[] pacers)
    {
        var perChannel = new long[spec.Channels];
        if (spec.OverHttp)
        {
            // HTTP workers take channels in one shared round-robin.
            var published = pacers[0].Published;
            for (var c = 0; c < spec.Channels; c++)
            {
                perChannel[c] = (published / spec.Channels) + (c < published % spec.Channels ? 1 : 0);
            }
        }
        else
        {
            for (var p = 0; p < spec.Publishers; p++)
            {
                var owned = Enumerable.Range(0, spec.Channels).Where(c => c % spec.Publishers == p).ToArray();
                var published = pacers[p].Published;
                for (var k = 0; k < owned.Length; k++)
                {
                    perChannel[owned[k]] = (published / owned.Length) + (k < published % owned.Length ? 1 : 0);
                }
            }
        }

        var expected = new long[total];
        for (var i = 0; i < total; i++)
        {
            expected[i] = perChannel[i % spec.Channels];
        }

        return expected;
    }

    // Messages that subscribers still connected have not received (a subscriber the server cut counts under
    // Disconnected instead). More than expected on one subscriber never makes up for another's missing ones.
    private static long Missing(BenchSocket[] subscribers, long[] expected)
    {
        long missing = 0;
        for (var i = 0; i < subscribers.Length; i++)
        {
            if (!subscribers[i].Completion.IsCompleted)
            {
                missing += Math.Max(0, expected[i] - subscribers[i].Scanner.Stamps);
            }
        }

        return missing;
    }

    // What went wrong when a count did: each subscriber off its expected count (by channel), the wait for stragglers,
    // and the warnings every process of the target logged. Null when every subscriber got exactly its channel's messages.
    private static string? Miscount(RunningTarget running, BenchSocket[] subscribers, List<BenchSocket> publishers, long[] expected, int channels, TimeSpan drained)
    {
        var off = new List<string>();
        for (var i = 0; i < subscribers.Length; i++)
        {
            var got = subscribers[i].Scanner.Stamps;
            if (got != expected[i] || subscribers[i].Completion.IsCompleted)
            {
                off.Add($"subscriber {i} (channel {i % channels}): {got} of {expected[i]}{(subscribers[i].Completion.IsCompleted ? ", cut" : "")}");
            }
        }

        if (off.Count == 0)
        {
            return null;
        }

        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"waited {drained.TotalSeconds:0.0} s for stragglers; {off.Count} subscribers off:");
        foreach (var line in off.Take(30))
        {
            text.AppendLine(line);
        }

        // A publish the server refused was counted as published: its error explains the subscribers' shortfall.
        for (var p = 0; p < publishers.Count; p++)
        {
            if (publishers[p].Scanner.FirstError is { } error)
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"publisher {p} was answered with an error: {error}");
            }
        }

        foreach (var process in running.Services.Append(running.Server))
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"{process.Name} ({process.LogPath}):");
            foreach (var line in Warnings(process.LogPath).TakeLast(40))
            {
                text.AppendLine(line);
            }
        }

        return text.ToString();
    }

    // The log's warnings and errors with the message line that follows each (the console logger's two-line form).
    private static IEnumerable<string> Warnings(string path)
    {
        string[] lines;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var reader = new StreamReader(stream);
            lines = reader.ReadToEnd().Split('\n');
        }
        catch (IOException e)
        {
            return [$"(log unreadable: {e.Message})"];
        }

        var picked = new List<string>();
        for (var i = 0; i < lines.Length; i++)
        {
            if ((lines[i].StartsWith("warn:", StringComparison.Ordinal) || lines[i].StartsWith("fail:", StringComparison.Ordinal) || lines[i].StartsWith("crit:", StringComparison.Ordinal))
                && !lines[i].Contains("RelayAuthStartup", StringComparison.Ordinal))
            {
                picked.Add(lines[i].TrimEnd() + (i + 1 < lines.Length ? " " + lines[i + 1].Trim() : ""));
            }
        }

        return picked;
    }

    // Deliveries beyond every message published to the subscriber's channel: a duplicate, or a miscount.
    private static long Extra(BenchSocket[] subscribers, long[] expected)
    {
        long extra = 0;
        for (var i = 0; i < subscribers.Length; i++)
        {
            extra += Math.Max(0, subscribers[i].Scanner.Stamps - expected[i]);
        }

        return extra;
    }

    private static (string? Name, TimeSpan Cpu) Busiest(Dictionary<int, (string Name, TimeSpan Cpu)> before, Dictionary<int, (string Name, TimeSpan Cpu)> after)
    {
        (string? Name, TimeSpan Cpu) busiest = (null, TimeSpan.Zero);
        foreach (var (tid, (name, cpu)) in after)
        {
            var used = cpu - (before.TryGetValue(tid, out var earlier) ? earlier.Cpu : TimeSpan.Zero);
            if (used > busiest.Cpu)
            {
                busiest = (name, used);
            }
        }

        return busiest;
    }

    // Connects one WebSocket publisher (speaking the target's publishing protocol, at its publishing address) and starts it
    // publishing round-robin over its templates.
    private static async Task<(BenchSocket Socket, Task Publishing)> StartPublisherAsync(Target target, RunningTarget running, FanOutSpec spec, Pacer pacer, PublishTemplate[] templates, CancellationToken stop)
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
        var socket = await BenchSocket.ConnectAsync(running.PublishUri, scanner, null, CancellationToken.None).ConfigureAwait(false);
        await target.HandshakeAsync(socket).ConfigureAwait(false);
        var terminator = spec.Pacing == PublishPacing.AckWindow && !acksEachPublish ? target.BurstTerminator : null;
        return (socket, PublishOverWebSocketAsync(socket, templates, spec, pacer, terminator, bursts, stop));
    }

    private static void ThrowIfFaulted(List<Task> publishing)
    {
        foreach (var task in publishing)
        {
            if (task.IsFaulted)
            {
                task.GetAwaiter().GetResult();
            }
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
