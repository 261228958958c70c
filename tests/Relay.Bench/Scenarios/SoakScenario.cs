using System.Diagnostics;
using System.Globalization;
using Relay.Bench.Load;
using Relay.Bench.Targets;

namespace Relay.Bench.Scenarios;

/// <summary>
/// The soak run (issue 16): the standalone host as shipped, in its own process, holds <see cref="SoakSpec.Connections"/>
/// subscribed connections from several client processes (<see cref="SoakClient"/>) for minutes while some of them close
/// every second (cleanly or with a reset) and come back with <c>since</c>, and one publisher sends a steady acknowledged
/// load. Every <see cref="SoakSpec.SampleEvery"/> the server's memory, managed heap, descriptors and threads are read;
/// at the end every delivery is checked (each held connection has every message of its channel once, in order) and,
/// once every client is gone, the descriptors must be back where they started.
/// </summary>
internal static class SoakScenario
{
    private static readonly TimeSpan DescriptorWait = TimeSpan.FromSeconds(60);

    // The host's quiet-time trim (Relay:Memory) runs one compacting collection 5 s after the process goes quiet: after it,
    // the heap holds only what the server keeps, which is what a leak would leave behind.
    private static readonly TimeSpan TrimWait = TimeSpan.FromSeconds(30);

    public static async Task<ScenarioResult> RunAsync(Target target, SoakSpec spec, BenchEnvironment environment)
    {
        if (target is not RelayTarget)
        {
            throw new ArgumentException($"the soak scenario resumes with Relay's 'since' and counts Relay's acknowledgements; {target.Name} has neither");
        }

        var progress = new Progress($"soak/{target.Name}");
        progress.Say("starting the server");
        await using var running = await target.StartAsync(environment).ConfigureAwait(false);
        var server = running.Server;
        using var http = new HttpClient { BaseAddress = running.HttpBase, Timeout = TimeSpan.FromSeconds(10) };

        // Warm the server's code paths, then take the baseline once those connections are gone.
        var warm = await Fleet.ConnectAsync(target, running.WebSocketUri, 200, i => $"warm-{i}", _ => new StreamScanner(target.Tokens), progress).ConfigureAwait(false);
        await Fleet.CloseAsync(warm).ConfigureAwait(false);
        await Task.Delay(TimeSpan.FromSeconds(3)).ConfigureAwait(false);
        var baseline = await SampleAsync(server, http, TimeSpan.Zero, [], null).ConfigureAwait(false);
        progress.Say($"baseline: RSS {baseline.RssMiB:0.0} MiB, heap {baseline.HeapMiB:0.0} MiB, {baseline.Descriptors:N0} descriptors, {baseline.Threads} threads");

        var children = new List<SoakChild>();
        try
        {
            for (int first = 0, number = 0; first < spec.Connections; first += spec.PerProcess, number++)
            {
                children.Add(SoakChild.Start(target, running.WebSocketUri, spec, number, first, Math.Min(spec.PerProcess, spec.Connections - first), progress));
            }

            await Task.WhenAll(children.Select(c => c.Ready)).WaitAsync(TimeSpan.FromMinutes(10)).ConfigureAwait(false);
            progress.Say($"{spec.Connections:N0} connections subscribed to {spec.Channels:N0} channels; publishing {spec.Rate:N0} msgs/s and reconnecting {spec.ChurnPerSecond:0.#} a second for {spec.Duration.TotalMinutes:0.#} min");

            await using var publisher = await SoakPublisher.ConnectAsync(target, running.WebSocketUri, spec.Channels, spec.Payload, spec.Rate).ConfigureAwait(false);
            using var stop = new CancellationTokenSource();
            var publishing = publisher.RunAsync(stop.Token);
            foreach (var child in children)
            {
                child.Send("churn");
            }

            var loadStart = LoadAverage();
            var cpu0 = server.CpuTime();
            var clock = Stopwatch.StartNew();
            var samples = new List<SoakSample>();
            while (clock.Elapsed < spec.Duration)
            {
                var next = spec.SampleEvery * (samples.Count + 1);
                await Task.Delay(next < clock.Elapsed ? TimeSpan.Zero : next - clock.Elapsed).ConfigureAwait(false);
                var sample = await SampleAsync(server, http, clock.Elapsed, children, publisher).ConfigureAwait(false);
                samples.Add(sample);
                progress.Say(Describe(sample));
                if (children.Any(c => c.HasExited) || publishing.IsFaulted)
                {
                    break;
                }
            }

            await stop.CancelAsync().ConfigureAwait(false);
            await publishing.ConfigureAwait(false);
            await publisher.DrainAsync().ConfigureAwait(false);
            var cpu = (server.CpuTime() - cpu0) / clock.Elapsed;
            var loadEnd = LoadAverage();

            // Stop the churn and count: each held connection must reach its channel's last acknowledged message.
            var finals = string.Join(' ', publisher.Finals());
            foreach (var child in children)
            {
                child.Send("final " + finals);
            }

            var reports = await Task.WhenAll(children.Select(c => c.Result)).WaitAsync(TimeSpan.FromMinutes(3)).ConfigureAwait(false);
            var peakRss = server.PeakRssBytes();

            // Close everything, then wait for the server to let go of every descriptor.
            progress.Say("closing every connection");
            await Task.WhenAll(children.Select(c => c.StopAsync())).ConfigureAwait(false);
            await publisher.DisposeAsync().ConfigureAwait(false);
            var after = await SampleAsync(server, http, clock.Elapsed, [], null).ConfigureAwait(false);
            var waiting = Stopwatch.StartNew();
            while (after.Descriptors > baseline.Descriptors + SoakSpec.DescriptorTolerance && waiting.Elapsed < DescriptorWait)
            {
                await Task.Delay(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
                after = await SampleAsync(server, http, clock.Elapsed, [], null).ConfigureAwait(false);
            }

            var descriptorsAfter = after.Descriptors;
            after = await SampleAfterTrimAsync(server, http).ConfigureAwait(false);

            var figures = new SoakFigures
            {
                Spec = spec,
                Samples = samples,
                Held = reports.Sum(r => r.Held),
                Published = publisher.Published,
                Deliveries = reports.Sum(r => r.Deliveries),
                Expected = reports.Sum(r => r.Expected),
                Lost = reports.Sum(r => r.Lost),
                Missed = reports.Sum(r => r.Missed),
                Skipped = reports.Sum(r => r.Skipped),
                Duplicates = reports.Sum(r => r.Duplicates),
                Reconnects = reports.Sum(r => r.Reconnects),
                CleanCloses = reports.Sum(r => r.CleanCloses),
                Resets = reports.Sum(r => r.Resets),
                ReconnectFailures = reports.Sum(r => r.ReconnectFailures),
                NotRecovered = reports.Sum(r => r.NotRecovered),
                CutByServer = reports.Sum(r => r.CutByServer),
                RssBaselineMiB = baseline.RssMiB,
                RssAfterMiB = after.RssMiB,
                HeapBaselineMiB = baseline.HeapMiB,
                HeapAfterMiB = after.HeapMiB,
                DescriptorsBaseline = baseline.Descriptors,
                DescriptorsPeak = samples.Count == 0 ? baseline.Descriptors : samples.Max(s => s.Descriptors),
                DescriptorsAfter = Math.Max(descriptorsAfter, after.Descriptors),
                ThreadsBaseline = baseline.Threads,
                ThreadsAfter = after.Threads,
                ServerConnectionsAfter = after.ServerConnections,
                LoadStart = loadStart,
                LoadEnd = loadEnd,
                ServerCpuCores = cpu,
            };
            progress.Say($"after closing: RSS {after.RssMiB:0.0} MiB, heap {after.HeapMiB:0.0} MiB, {after.Descriptors:N0} descriptors, {after.Threads} threads, {after.ServerConnections} connections");
            progress.Say($"{figures.Reconnects:N0} reconnects ({figures.CleanCloses:N0} closed cleanly, {figures.Resets:N0} reset), {figures.Published:N0} published, {figures.Deliveries:N0} deliveries of {figures.Expected:N0} expected");
            progress.Say(figures.Verdict);
            return new ScenarioResult
            {
                Scenario = "soak",
                Target = target.Name,
                Connections = spec.Connections,
                PublishedPerSecond = figures.Published / clock.Elapsed.TotalSeconds,
                DeliveredPerSecond = figures.Deliveries / clock.Elapsed.TotalSeconds,
                ServerCpuCores = cpu,
                PeakRssBytes = peakRss,
                Lost = figures.Lost,
                Disconnected = (int)figures.CutByServer,
                Soak = figures,
                Error = children.Any(c => c.HasExited) && figures.Held < spec.Connections ? "a client process lost its connections" : null,
            };
        }
        finally
        {
            foreach (var child in children)
            {
                child.Dispose();
            }
        }
    }

    private static async Task<SoakSample> SampleAsync(ServerProcess server, HttpClient http, TimeSpan elapsed, IReadOnlyList<SoakChild> children, SoakPublisher? publisher)
    {
        string? metrics = null;
        try
        {
            metrics = await http.GetStringAsync(new Uri("metrics", UriKind.Relative)).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            // A busy server that misses a scrape still has its /proc figures.
        }

        // Objects on the heap after the last collection: its size less the free space between them (fragmentation).
        var heap = metrics is null ? null : PrometheusText.Sum(metrics, "dotnet_gc_last_collection_heap_size_bytes") - PrometheusText.Sum(metrics, "dotnet_gc_last_collection_heap_fragmentation_size_bytes");
        var committed = metrics is null ? null : PrometheusText.Sum(metrics, "dotnet_gc_last_collection_memory_committed_size_bytes");
        var connections = metrics is null ? null : PrometheusText.Sum(metrics, "relay_ingress_connections");
        var statuses = children.Select(c => c.Status).ToList();
        return new SoakSample(
            elapsed.TotalMinutes,
            server.RssBytes() / 1048576.0,
            heap / 1048576.0,
            committed / 1048576.0,
            server.DescriptorCount(),
            server.ThreadCount(),
            (int?)connections,
            statuses.Sum(s => s?.Held ?? 0),
            statuses.Sum(s => s?.Reconnects ?? 0),
            statuses.Sum(s => s?.Deliveries ?? 0),
            publisher?.Acknowledged ?? 0);
    }

    /// <summary>A sample once the host's quiet-time trim has run (or <see cref="TrimWait"/> passed without one).</summary>
    private static async Task<SoakSample> SampleAfterTrimAsync(ServerProcess server, HttpClient http)
    {
        var trims = await TrimsAsync(http).ConfigureAwait(false);
        var waiting = Stopwatch.StartNew();
        while (waiting.Elapsed < TrimWait && await TrimsAsync(http).ConfigureAwait(false) <= trims)
        {
            await Task.Delay(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        }

        return await SampleAsync(server, http, TimeSpan.Zero, [], null).ConfigureAwait(false);
    }

    private static async Task<double> TrimsAsync(HttpClient http) =>
        PrometheusText.Sum(await http.GetStringAsync(new Uri("metrics", UriKind.Relative)).ConfigureAwait(false), "relay_memory_trims_total") ?? 0;

    private static string Describe(SoakSample s) => string.Create(CultureInfo.InvariantCulture,
        $"{s.Minutes:0.00} min: RSS {s.RssMiB:0.0} MiB, heap {s.HeapMiB:0.0} MiB (GC committed {s.CommittedMiB:0.0}), {s.Descriptors:N0} descriptors, {s.Threads} threads, {s.ServerConnections:N0} connections (clients hold {s.Held:N0}), {s.Reconnects:N0} reconnects, {s.Deliveries:N0} deliveries, {s.Published:N0} acknowledged publishes");

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";
}
