using Relay.Bench.Reporting;
using Relay.Bench.Scenarios;
using Relay.Bench.Targets;

namespace Relay.Bench.Tests;

/// <summary>
/// The soak scenario run small against the standalone host's Release build (300 connections from two client
/// processes, 10 reconnects a second, 20 s): its counts and samples must be real, or the 19,000-connection run's
/// verdict means nothing.
/// </summary>
public sealed class SoakTests
{
    private static readonly BenchEnvironment Environment = BenchEnvironment.Locate();

    private static readonly MachineInfo Machine = new(new DateTime(2026, 12, 5, 22, 0, 0, DateTimeKind.Utc), "Test CPU", 2, 24, "Debian", "10.0", "none");

    [Fact]
    public async Task Soak_WithChurn_CountsEveryDeliveryAcrossReconnects_AndSamplesTheServer()
    {
        var spec = new SoakSpec(300, 150, TimeSpan.FromSeconds(20), 10, 20, 50, 100, TimeSpan.FromSeconds(2), SoakSpec.DefaultFlatMiBPerMinute);
        var result = await SoakScenario.RunAsync(new RelayTarget(), spec, Environment);

        Assert.Null(result.Error);
        var soak = Assert.IsType<SoakFigures>(result.Soak);
        Assert.Equal(300, soak.Held);

        // Every held connection has every acknowledged message of its channel (15 connections on each of 20 channels),
        // once and in order, reconnects and their recoveries included.
        Assert.True(soak.Published > 100, $"{soak.Published} publishes acknowledged");
        Assert.Equal(soak.Published * 15, soak.Expected);
        Assert.Equal(soak.Expected, soak.Deliveries);
        Assert.Equal(0, soak.Lost);
        Assert.Equal(0, soak.Missed);
        Assert.Equal(0, soak.Duplicates);
        Assert.Equal(0, soak.NotRecovered);
        Assert.Equal(0, soak.CutByServer);
        Assert.True(soak.CountsExact);

        // The churn happened, both ways, and every connection came back.
        Assert.True(soak.Reconnects >= 40, $"{soak.Reconnects} reconnects");
        Assert.Equal(soak.Reconnects, soak.CleanCloses + soak.Resets);
        Assert.True(soak.CleanCloses > 0 && soak.Resets > 0, $"{soak.CleanCloses} clean closes, {soak.Resets} resets");
        Assert.Equal(0, soak.ReconnectFailures);

        // Samples came from the server process, every 2 s.
        Assert.InRange(soak.Samples.Count, 5, 11);
        Assert.All(soak.Samples, s =>
        {
            Assert.InRange(s.RssMiB, 10, 4096);
            Assert.NotNull(s.HeapMiB);
            Assert.InRange(s.HeapMiB.Value, 0.5, 4096);
            Assert.True(s.Descriptors > soak.DescriptorsBaseline, $"{s.Descriptors} descriptors while holding 300 connections, {soak.DescriptorsBaseline} before");
            Assert.True(s.Threads > 1);
        });
        Assert.Contains(soak.Samples, s => s.ServerConnections >= 300 && s.Held == 300);
        Assert.True(soak.Samples[^1].Published > soak.Samples[0].Published);

        // Closing everything gave back every descriptor and connection.
        Assert.True(soak.DescriptorsReturned, $"{soak.DescriptorsAfter} descriptors after, {soak.DescriptorsBaseline} before");
        Assert.Equal(0, soak.ServerConnectionsAfter);
        Assert.True(soak.DescriptorsPeak >= soak.DescriptorsBaseline + 300);
    }

    [Fact]
    public void Verdict_GrowingMemory_IsNotFlat_AndSteadyMemory_IsFlat()
    {
        static SoakFigures Run(double mibPerMinute) => new()
        {
            Spec = new SoakSpec(100, 100, TimeSpan.FromMinutes(3), 1, 10, 10, 100, TimeSpan.FromSeconds(10), 2),
            Samples = Enumerable.Range(1, 18).Select(i => new SoakSample(i / 6.0, 200 + (mibPerMinute * i / 6.0) + (i % 2), 50 + (i % 3), 120, 400, 30, 100, 100, i, i, i)).ToList(),
            DescriptorsBaseline = 300,
            DescriptorsAfter = 301,
        };

        var growing = Run(5);
        var steady = Run(0);

        Assert.InRange(growing.RssSlope, 4.5, 5.5);
        Assert.False(growing.MemoryFlat);
        Assert.StartsWith("**not flat**", growing.Verdict, StringComparison.Ordinal);
        Assert.InRange(steady.RssSlope, -0.5, 0.5);
        Assert.True(steady.MemoryFlat);
        Assert.StartsWith("flat", steady.Verdict, StringComparison.Ordinal);
        Assert.Equal(200 + (5 * 3.5 / 6.0) + 0.5, growing.RssFirstThirdMiB, 3);
        Assert.False((steady with { DescriptorsAfter = 400 }).DescriptorsReturned);
    }

    [Fact]
    public void Report_ShowsTheCountsTheTrendAndEverySample()
    {
        var figures = new SoakFigures
        {
            Spec = new SoakSpec(19_000, 10_000, TimeSpan.FromMinutes(5), 190, 1000, 300, 100, TimeSpan.FromSeconds(10), 2),
            Samples = [new SoakSample(0.17, 250, 80, 150, 19_400, 30, 19_001, 19_000, 1_900, 57_000, 3_000)],
            Held = 19_000,
            Published = 90_000,
            Deliveries = 1_710_000,
            Expected = 1_710_000,
        };

        var markdown = SoakReport.Render(figures, "dotnet Relay.Bench.dll soak", Machine);

        Assert.StartsWith(MarkdownReport.Markers(SoakReport.Section).Begin, markdown, StringComparison.Ordinal);
        Assert.EndsWith(MarkdownReport.Markers(SoakReport.Section).End + "\n", markdown.ReplaceLineEndings("\n"), StringComparison.Ordinal);
        Assert.Contains("| deliveries (recoveries included) / expected | 1,710,000 / 1,710,000 |", markdown, StringComparison.Ordinal);
        Assert.Contains("| 0.17 | 250.0 | 80.0 | 150.0 | 19,400 | 30 | 19,001 | 19,000 | 1,900 | 57,000 | 3,000 |", markdown, StringComparison.Ordinal);
        Assert.Contains("`dotnet Relay.Bench.dll soak`", markdown, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_SoakRunsOnlyWhenNamed_AndFillsItsDefaultsFromTheMachine()
    {
        Assert.DoesNotContain("soak", BenchOptions.Parse([]).Scenarios);

        var spec = BenchOptions.Parse(["soak", "--soak-minutes", "2.5"]).Soak(openFilesLimit: 20_000);

        Assert.Equal(19_000, spec.Connections);
        Assert.Equal(190, spec.ChurnPerSecond);
        Assert.Equal(TimeSpan.FromMinutes(2.5), spec.Duration);
        Assert.Equal(9_000, BenchOptions.Parse(["soak"]).Soak(openFilesLimit: 10_000).Connections);
    }
}
