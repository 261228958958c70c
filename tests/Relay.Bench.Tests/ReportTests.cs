using Relay.Bench.Load;
using Relay.Bench.Reporting;
using Relay.Bench.Scenarios;
using Relay.Bench.Targets;

namespace Relay.Bench.Tests;

public sealed class ReportTests
{
    private static readonly MachineInfo Machine = new(new DateTime(2026, 12, 3, 6, 0, 0, DateTimeKind.Utc), "Test CPU", 2, 24, "Debian", "10.0", "nats-server 2.9.10");

    private static ScenarioResult Fan(string target, double delivered, double p99) => new()
    {
        Scenario = "fanout",
        Target = target,
        DeliveredPerSecond = delivered,
        PublishedPerSecond = delivered / 10_000,
        Latency = new LatencySummary(1000, p99 / 3, p99 / 2, p99, p99 * 2, p99 * 3),
        ServerCpuCores = 1,
        PeakRssBytes = 100 * 1048576,
    };

    [Fact]
    public void Render_ShowsEachTargetAndRelaysRatioToEachPeer()
    {
        var markdown = MarkdownReport.Render([Fan("relay", 1_500_000, 2), Fan("nats", 1_000_000, 4), Fan("signalr", 300_000, 8)], new Dictionary<string, string> { ["fanout"] = "10,000 subscribers" }, "dotnet Relay.Bench.dll fanout", Machine);

        Assert.Contains("| deliveries/s | 1,500,000 | 1,000,000 | 300,000 | 1.50x | 5.00x |", markdown, StringComparison.Ordinal);
        Assert.Contains("| latency p99 (ms) | 2.000 | 4.000 | 8.000 | 0.50x | 0.25x |", markdown, StringComparison.Ordinal);
        Assert.Contains("`dotnet Relay.Bench.dll fanout`", markdown, StringComparison.Ordinal);
        Assert.Contains("| fan-out deliveries/s ≥ NATS over WebSocket | 1.50x NATS | yes |", markdown, StringComparison.Ordinal);
        Assert.Contains("| fan-out deliveries/s ≥ 1.5x SignalR | 5.00x SignalR | yes |", markdown, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_MarksAMissedTarget()
    {
        var markdown = MarkdownReport.Render([Fan("relay", 900_000, 5), Fan("nats", 1_000_000, 4)], new Dictionary<string, string>(), "cmd", Machine);

        Assert.Contains("| fan-out deliveries/s ≥ NATS over WebSocket | 0.90x NATS | **no** |", markdown, StringComparison.Ordinal);
        Assert.Contains("| fan-out p99 ≤ NATS's | 5.00 ms vs 4.00 ms | **no** |", markdown, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_ChecksThePublishTargetsAgainstNats()
    {
        static ScenarioResult Publish(string target, double rate, double p50) => new()
        {
            Scenario = "publish-ws-1",
            Target = target,
            DeliveredPerSecond = rate,
            PublishedPerSecond = rate,
            Latency = new LatencySummary(1000, p50, p50 * 2, p50 * 4, p50 * 8, p50 * 10),
            ServerCpuCores = 1.5,
            BusiestThreadCores = 0.75,
            BusiestThreadName = ".NET TP Worker",
            PeakRssBytes = 100 * 1048576,
        };

        var met = MarkdownReport.Render([Publish("relay", 500_000, 0.15), Publish("nats", 400_000, 0.1)], new Dictionary<string, string>(), "cmd", Machine);
        var missed = MarkdownReport.Render([Publish("relay", 300_000, 0.25), Publish("nats", 400_000, 0.1)], new Dictionary<string, string>(), "cmd", Machine);

        Assert.Contains("| one publisher, window 64, one subscriber: msgs/s ≥ NATS's | 1.25x NATS | yes |", met, StringComparison.Ordinal);
        Assert.Contains("| one publisher, window 64, one subscriber: p50 ≤ 2x NATS's | 0.150 ms vs 0.100 ms (1.50x) | yes |", met, StringComparison.Ordinal);
        Assert.Contains("| busiest server thread (cores) | 0.75 | 0.75 | 1.00x |", met, StringComparison.Ordinal);
        Assert.Contains("| one publisher, window 64, one subscriber: msgs/s ≥ NATS's | 0.75x NATS | **no** |", missed, StringComparison.Ordinal);
        Assert.Contains("| one publisher, window 64, one subscriber: p50 ≤ 2x NATS's | 0.250 ms vs 0.100 ms (2.50x) | **no** |", missed, StringComparison.Ordinal);
    }

    [Fact]
    public void Runs_PublishWs_RunsOncePerSubscriberCount_AndManyPublishersSplitsTheChannels()
    {
        var options = BenchOptions.Parse(["publish-ws", "many-publishers", "--publish-subscribers", "1,10,100", "--publishers", "50", "--publisher-window", "4"]);
        var runs = options.Runs().ToList();
        var target = new RelayTarget();

        Assert.Equal(["publish-ws-1", "publish-ws-10", "publish-ws-100", "many-publishers"], runs.Select(r => r.Scenario));
        Assert.Equal([1, 10, 100], runs.Take(3).Select(r => r.SpecOf(target)!.SubscribersPerChannel));
        Assert.All(runs.Take(3), r => Assert.Equal(PublishPacing.AckWindow, r.SpecOf(target)!.Pacing));
        var many = runs[3].SpecOf(target)!;
        Assert.Equal((1000, 3, 50, 4, PublishPacing.AckWindow), (many.Channels, many.SubscribersPerChannel, many.Publishers, many.Window, many.Pacing));
        Assert.Contains("50 WebSocket publishers (each round-robin over 20 channels", runs[3].Description, StringComparison.Ordinal);

        Assert.Contains("whole numbers", Assert.Throws<ArgumentException>(() => BenchOptions.Parse(["--publish-subscribers", "1,none"])).Message, StringComparison.Ordinal);
        Assert.Contains("--publishers must be 1 to --channels", Assert.Throws<ArgumentException>(() => BenchOptions.Parse(["many-publishers", "--channels", "10", "--publishers", "20"])).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WriteInto_ReplacesOnlyTheGeneratedSection()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, $"# Benchmarks\n\nhand-written intro\n\n{MarkdownReport.Begin}\nold figures\n{MarkdownReport.End}\n\nhand-written analysis\n");
            MarkdownReport.WriteInto(path, $"{MarkdownReport.Begin}\nnew figures\n{MarkdownReport.End}\n");
            var text = File.ReadAllText(path);

            Assert.Contains("hand-written intro", text, StringComparison.Ordinal);
            Assert.Contains("hand-written analysis", text, StringComparison.Ordinal);
            Assert.Contains("new figures", text, StringComparison.Ordinal);
            Assert.DoesNotContain("old figures", text, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void WriteInto_ANamedSection_LeavesTheMainOneAlone_AndIsAppendedOnce()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, $"# Benchmarks\n\n{MarkdownReport.Begin}\nwebsocket figures\n{MarkdownReport.End}\n");
            var (begin, end) = MarkdownReport.Markers("mqtt");
            MarkdownReport.WriteInto(path, $"{begin}\nmqtt one\n{end}\n", "mqtt");
            MarkdownReport.WriteInto(path, $"{begin}\nmqtt two\n{end}\n", "mqtt");
            var text = File.ReadAllText(path);

            Assert.Contains("websocket figures", text, StringComparison.Ordinal);
            Assert.Contains("mqtt two", text, StringComparison.Ordinal);
            Assert.DoesNotContain("mqtt one", text, StringComparison.Ordinal);
            Assert.Equal(1, text.Split(begin).Length - 1);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Options_RejectBadArgumentsWithAClearMessage()
    {
        Assert.Contains("unknown argument", Assert.Throws<ArgumentException>(() => BenchOptions.Parse(["--nope"])).Message, StringComparison.Ordinal);
        Assert.Contains("whole number", Assert.Throws<ArgumentException>(() => BenchOptions.Parse(["--subscribers", "many"])).Message, StringComparison.Ordinal);
        Assert.Contains("at least", Assert.Throws<ArgumentException>(() => BenchOptions.Parse(["--payload", "5"])).Message, StringComparison.Ordinal);
        var options = BenchOptions.Parse(["fanout", "--targets", "relay,nats", "--subscribers", "500"]);
        Assert.Equal(["fanout"], options.Scenarios);
        Assert.Equal(["relay", "nats"], options.Targets);
        Assert.Equal(500, options.Subscribers);
    }
}
