using System.Globalization;
using System.Text;
using Relay.Bench.Scenarios;

namespace Relay.Bench.Reporting;

/// <summary>
/// Writes a run into docs/benchmarks.md between two markers, leaving the hand-written analysis around them alone:
/// the machine, the exact command, each figure for Relay and each peer, and Relay's ratio to each peer.
/// </summary>
internal static class MarkdownReport
{
    public const string Begin = "<!-- bench:begin (written by tests/Relay.Bench; edit outside these markers) -->";
    public const string End = "<!-- bench:end -->";

    /// <summary>The markers of a named section (<c>--section</c>): a run of other targets (MQTT) kept beside the main one.</summary>
    public static (string Begin, string End) Markers(string? section) => section is null
        ? (Begin, End)
        : ($"<!-- bench:{section}:begin (written by tests/Relay.Bench --section {section}; edit outside these markers) -->", $"<!-- bench:{section}:end -->");

    public static string Render(IReadOnlyList<ScenarioResult> results, IReadOnlyDictionary<string, string> descriptions, string command, MachineInfo machine, string? section = null)
    {
        var (begin, end) = Markers(section);
        var md = new StringBuilder();
        md.AppendLine(begin);
        md.AppendLine(CultureInfo.InvariantCulture, $"## Latest run: {machine.Date:yyyy-MM-dd HH:mm} UTC");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Command: `{command}`");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Machine: {machine.Cpu}, {machine.Cores} cores, {machine.MemoryGiB:0} GiB, {machine.Os}, .NET {machine.Runtime}; peers: {machine.Peers}. Load generator on the same machine.");
        md.AppendLine();

        var targets = TargetCheck.Evaluate(results, section).ToList();
        if (targets.Count > 0)
        {
            md.AppendLine(section is null ? "### Targets (issues 4 and 10)" : "### Targets");
            md.AppendLine();
            md.AppendLine("| target | measured | met |");
            md.AppendLine("|---|---|---|");
            foreach (var (goal, measured, met) in targets)
            {
                md.AppendLine(CultureInfo.InvariantCulture, $"| {goal} | {measured} | {(met ? "yes" : "**no**")} |");
            }

            md.AppendLine();
        }

        foreach (var scenario in results.GroupBy(r => r.Scenario))
        {
            // Ratios are against the first Relay target of the run, in --targets order (relay in the main run, relay-mqtt in
            // the MQTT run, relay-pusher in the Pusher run).
            var relay = scenario.FirstOrDefault(r => r.Target.StartsWith("relay", StringComparison.Ordinal));
            var peers = scenario.Where(r => r != relay).ToList();
            md.AppendLine(CultureInfo.InvariantCulture, $"### {scenario.Key}: {descriptions.GetValueOrDefault(scenario.Key, string.Empty)}");
            md.AppendLine();
            md.Append("| figure |");
            foreach (var result in scenario)
            {
                md.Append(CultureInfo.InvariantCulture, $" {result.Target} |");
            }

            foreach (var peer in peers)
            {
                md.Append(CultureInfo.InvariantCulture, $" {relay?.Target ?? "relay"} ÷ {peer.Target} |");
            }

            md.AppendLine();
            md.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---:|", scenario.Count() + peers.Count)));
            foreach (var (label, value, format) in Rows(scenario.Key))
            {
                if (scenario.All(r => value(r) is null))
                {
                    continue;
                }

                md.Append(CultureInfo.InvariantCulture, $"| {label} |");
                foreach (var result in scenario)
                {
                    md.Append(CultureInfo.InvariantCulture, $" {(result.Error is not null && value(result) is null ? "failed" : Format(value(result), format))} |");
                }

                foreach (var peer in peers)
                {
                    var ours = relay is null ? null : value(relay);
                    var theirs = value(peer);
                    md.Append(ours is > 0 && theirs is > 0 ? FormattableString.Invariant($" {ours / theirs:0.00}x |") : " – |");
                }

                md.AppendLine();
            }

            foreach (var failed in scenario.Where(r => r.Error is not null))
            {
                md.AppendLine();
                md.AppendLine(CultureInfo.InvariantCulture, $"{failed.Target}: {failed.Error}");
            }

            md.AppendLine();
        }

        md.AppendLine("Ratios are Relay's figure divided by the peer's: above 1 is better for throughput, below 1 is better for latency, CPU and memory.");
        md.AppendLine(end);
        return md.ToString();
    }

    /// <summary>
    /// Replaces the generated section of <paramref name="path"/> between the markers of <paramref name="name"/> (or
    /// appends one) with <paramref name="section"/>.
    /// </summary>
    public static void WriteInto(string path, string section, string? name = null)
    {
        var (beginMarker, endMarker) = Markers(name);
        var existing = File.Exists(path) ? File.ReadAllText(path) : "# Benchmarks\n\n";
        var begin = existing.IndexOf(beginMarker, StringComparison.Ordinal);
        var end = existing.IndexOf(endMarker, StringComparison.Ordinal);
        var updated = begin >= 0 && end > begin
            ? existing[..begin] + section.TrimEnd('\n') + existing[(end + endMarker.Length)..]
            : existing.TrimEnd('\n') + "\n\n" + section;
        File.WriteAllText(path, updated);
    }

    private static string Format(double? value, string format) =>
        value is null || double.IsNaN(value.Value) ? "–" : value.Value.ToString(format, CultureInfo.InvariantCulture);

    private static IEnumerable<(string Label, Func<ScenarioResult, double?> Value, string Format)> Rows(string scenario)
    {
        if (scenario == "idle")
        {
            yield return ("connections held", r => r.Error is null ? r.Connections : null, "N0");
            yield return ("server RSS per connection (KiB)", r => r.RssPerConnectionBytes / 1024, "0.0");
            yield return ("server CPU while idle (cores)", r => r.Error is null ? r.ServerCpuCores : null, "0.000");
            yield return ("server peak RSS (MiB)", r => r.Error is null ? r.PeakRssBytes / 1048576.0 : null, "0");
            yield return ("redis-server commands per connection (connecting)", r => r.RedisCommandsPer, "0.00");
            yield return ("redis-server bytes in + out per connection (connecting)", r => r.RedisBytesPer, "N0");
            yield return ("redis-server CPU per connection (µs, connecting)", r => r.RedisCpuMicrosPer, "0.0");
            yield return ("redis-server CPU while idle (cores)", r => r.RedisCpuCores, "0.000");
            yield break;
        }

        yield return ("deliveries/s", r => r.Error is null ? r.DeliveredPerSecond : null, "N0");
        yield return ("publishes/s", r => r.Error is null ? r.PublishedPerSecond : null, "N0");
        yield return ("latency p50 (ms)", r => r.Latency?.P50, "0.000");
        yield return ("latency p90 (ms)", r => r.Latency?.P90, "0.000");
        yield return ("latency p99 (ms)", r => r.Latency?.P99, "0.000");
        yield return ("latency p99.9 (ms)", r => r.Latency?.P999, "0.000");
        yield return ("latency max (ms)", r => r.Latency?.Max, "0.000");
        yield return ("server CPU (cores)", r => r.Error is null ? r.ServerCpuCores : null, "0.00");
        yield return ("busiest server thread (cores)", r => r.Error is null ? r.BusiestThreadCores : null, "0.00");
        yield return ("server peak RSS (MiB)", r => r.Error is null ? r.PeakRssBytes / 1048576.0 : null, "0");
        yield return ("redis-server commands per publish", r => r.RedisCommandsPer, "0.00");
        yield return ("redis-server bytes in + out per publish", r => r.RedisBytesPer, "N0");
        yield return ("redis-server CPU per publish (µs)", r => r.RedisCpuMicrosPer, "0.0");
        yield return ("redis-server CPU (cores)", r => r.RedisCpuCores, "0.00");
        yield return ("messages lost", r => r.Error is null ? r.Lost : null, "N0");
        yield return ("subscribers cut by the server", r => r.Error is null ? r.Disconnected : null, "N0");
    }
}

/// <summary>Issue 4's and issue 10's targets, checked against a run's figures.</summary>
internal static class TargetCheck
{
    // The main run's goals (issues 4 and 10) are told in the main section only: a section that runs relay for comparison
    // (the Pusher one) is not where they are judged.
    public static IEnumerable<(string Goal, string Measured, bool Met)> Evaluate(IReadOnlyList<ScenarioResult> results, string? section = null)
    {
        ScenarioResult? Find(string scenario, string target) => results.FirstOrDefault(r => r.Scenario == scenario && r.Target == target && r.Error is null && (section is null || target != "relay"));
        var fanRelay = Find("fanout", "relay");
        var fanNats = Find("fanout", "nats");
        var fanSignalR = Find("fanout", "signalr");
        if (fanRelay is not null && fanNats is not null)
        {
            yield return ("fan-out deliveries/s ≥ NATS over WebSocket", FormattableString.Invariant($"{fanRelay.DeliveredPerSecond / fanNats.DeliveredPerSecond:0.00}x NATS"), fanRelay.DeliveredPerSecond >= fanNats.DeliveredPerSecond);
            yield return ("fan-out p99 ≤ NATS's", FormattableString.Invariant($"{fanRelay.Latency?.P99:0.00} ms vs {fanNats.Latency?.P99:0.00} ms"), fanRelay.Latency?.P99 <= fanNats.Latency?.P99);
        }

        if (fanRelay is not null && fanSignalR is not null)
        {
            yield return ("fan-out deliveries/s ≥ 1.5x SignalR", FormattableString.Invariant($"{fanRelay.DeliveredPerSecond / fanSignalR.DeliveredPerSecond:0.00}x SignalR"), fanRelay.DeliveredPerSecond >= 1.5 * fanSignalR.DeliveredPerSecond);
        }

        if (Find("latency", "relay") is { Latency: { } latency })
        {
            yield return ("1,000 msgs/s to 100 subscribers: p50 < 0.8 ms", FormattableString.Invariant($"{latency.P50:0.000} ms"), latency.P50 < 0.8);
            yield return ("1,000 msgs/s to 100 subscribers: p99 < 2.5 ms", FormattableString.Invariant($"{latency.P99:0.000} ms"), latency.P99 < 2.5);
        }

        var publishRelay = Find("publish-ws-1", "relay");
        var publishNats = Find("publish-ws-1", "nats");
        if (publishRelay is not null && publishNats is not null)
        {
            yield return ("one publisher, window 64, one subscriber: msgs/s ≥ NATS's", FormattableString.Invariant($"{publishRelay.PublishedPerSecond / publishNats.PublishedPerSecond:0.00}x NATS"), publishRelay.PublishedPerSecond >= publishNats.PublishedPerSecond);
            yield return ("one publisher, window 64, one subscriber: p50 ≤ 2x NATS's", FormattableString.Invariant($"{publishRelay.Latency?.P50:0.000} ms vs {publishNats.Latency?.P50:0.000} ms ({publishRelay.Latency?.P50 / publishNats.Latency?.P50:0.00}x)"), publishRelay.Latency?.P50 <= 2 * publishNats.Latency?.P50);
        }

        if (Find("idle", "relay") is { RssPerConnectionBytes: { } perConnection } idle)
        {
            yield return ("idle subscribed connection ≤ 8 KiB server RSS", FormattableString.Invariant($"{perConnection / 1024:0.0} KiB over {idle.Connections:N0} connections"), perConnection <= 8 * 1024);
        }

        // Issue 14: Relay's MQTT against mosquitto.
        if (Find("fanout", "relay-mqtt") is { } fanMqtt && Find("fanout", "mosquitto") is { } fanMosquitto)
        {
            yield return ("MQTT QoS 0 fan-out deliveries/s ≥ 1.5x mosquitto", FormattableString.Invariant($"{fanMqtt.DeliveredPerSecond / fanMosquitto.DeliveredPerSecond:0.00}x mosquitto"), fanMqtt.DeliveredPerSecond >= 1.5 * fanMosquitto.DeliveredPerSecond);
        }

        if (Find("latency", "relay-mqtt") is { Latency: { } mqttLatency } && Find("latency", "mosquitto") is { Latency: { } mosquittoLatency })
        {
            yield return ("MQTT 1,000 msgs/s to 100 subscribers: p99 ≤ mosquitto's", FormattableString.Invariant($"{mqttLatency.P99:0.000} ms vs {mosquittoLatency.P99:0.000} ms"), mqttLatency.P99 <= mosquittoLatency.P99);
        }

        if (Find("idle", "relay-mqtt") is { RssPerConnectionBytes: { } mqttIdle } && Find("idle", "mosquitto") is { RssPerConnectionBytes: { } mosquittoIdle })
        {
            yield return ("MQTT idle subscribed connection: server RSS ≤ mosquitto's", FormattableString.Invariant($"{mqttIdle / 1024:0.0} KiB vs {mosquittoIdle / 1024:0.0} KiB"), mqttIdle <= mosquittoIdle);
        }
    }
}

/// <summary>What the report says about the machine.</summary>
internal sealed record MachineInfo(DateTime Date, string Cpu, int Cores, double MemoryGiB, string Os, string Runtime, string Peers)
{
    public static MachineInfo Collect(string peers)
    {
        var cpu = File.Exists("/proc/cpuinfo") ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU" : "unknown CPU";
        var memory = File.Exists("/proc/meminfo") ? double.Parse(File.ReadLines("/proc/meminfo").First().Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1048576 : 0;
        var os = File.Exists("/etc/os-release") ? File.ReadLines("/etc/os-release").FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))?.Split('=', 2)[1].Trim('"') ?? "Linux" : "Linux";
        return new MachineInfo(DateTime.UtcNow, cpu, Environment.ProcessorCount, memory, os, Environment.Version.ToString(), peers);
    }
}
