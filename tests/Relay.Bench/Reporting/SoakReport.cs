using System.Globalization;
using System.Text;
using Relay.Bench.Scenarios;

namespace Relay.Bench.Reporting;

/// <summary>
/// Writes a soak run into docs/benchmarks.md between markers of its own (section <c>soak</c>: the other scenarios'
/// section is left alone, and the reverse): the machine and its load, the exact command, the counts, the memory trend and the verdict, and
/// every sample.
/// </summary>
internal static class SoakReport
{
    /// <summary>The section's name: its markers are <see cref="MarkdownReport.Markers"/> of it.</summary>
    public const string Section = "soak";

    public static string Render(SoakFigures soak, string command, MachineInfo machine)
    {
        var spec = soak.Spec;
        var (begin, end) = MarkdownReport.Markers(Section);
        var md = new StringBuilder();
        void Line(FormattableString text) => md.AppendLine(text.ToString(CultureInfo.InvariantCulture));
        void Row(string figure, FormattableString value) => Line($"| {figure} | {value.ToString(CultureInfo.InvariantCulture)} |");

        md.AppendLine(begin);
        Line($"### Latest soak run: {machine.Date:yyyy-MM-dd HH:mm} UTC");
        md.AppendLine();
        Line($"Command: `{command}`");
        md.AppendLine();
        Line($"Machine: {machine.Cpu}, {machine.Cores} cores, {machine.MemoryGiB:0} GiB, {machine.Os}, .NET {machine.Runtime}; load generator on the same machine. Load average (1, 5, 15 min) when the churn began: {soak.LoadStart}; when it ended: {soak.LoadEnd}.");
        md.AppendLine();
        Line($"{spec.Connections:N0} subscribed WebSocket connections from {(spec.Connections + spec.PerProcess - 1) / spec.PerProcess} client processes on 127.0.0.x addresses, round-robin over {spec.Channels:N0} channels; {spec.ChurnPerSecond:N0} of them a second closed (alternately with a close frame and with a reset, no close frame) and resumed at once with `since`; {spec.Rate:N0} acknowledged publishes a second of {spec.Payload} bytes round-robin over the channels; {spec.Duration.TotalMinutes:0.#} minutes, the server sampled every {spec.SampleEvery.TotalSeconds:0} s.");
        md.AppendLine();
        md.AppendLine("| figure | value |");
        md.AppendLine("|---|---:|");
        Row("verdict", $"{soak.Verdict}");
        Row("connections held at the end (clients)", $"{soak.Held:N0}");
        Row("reconnects (close frame / reset)", $"{soak.Reconnects:N0} ({soak.CleanCloses:N0} / {soak.Resets:N0})");
        Row("reconnects that failed", $"{soak.ReconnectFailures:N0}");
        Row("resumes answered `recovered: false`", $"{soak.NotRecovered:N0}");
        Row("connections cut by the server (resumed at once)", $"{soak.CutByServer:N0}");
        Row("acknowledged publishes", $"{soak.Published:N0}");
        Row("deliveries (recoveries included) / expected", $"{soak.Deliveries:N0} / {soak.Expected:N0}");
        Row("lost / missed / duplicated or out of order", $"{soak.Lost:N0} / {soak.Missed:N0} / {soak.Duplicates:N0}");
        Row("skipped after `recovered: false` (history no longer held them)", $"{soak.Skipped:N0}");
        Row("server CPU (cores)", $"{soak.ServerCpuCores:0.00}");
        Row("RSS (MiB): baseline / first third / last third / after closing", $"{soak.RssBaselineMiB:0.0} / {soak.RssFirstThirdMiB:0.0} / {soak.RssLastThirdMiB:0.0} / {soak.RssAfterMiB:0.0}");
        Row("managed heap after the last GC (MiB): first third / last third", $"{soak.HeapFirstThirdMiB:0.0} / {soak.HeapLastThirdMiB:0.0}");
        Row("managed heap (MiB): before the connections / after closing them and the host's quiet-time trim", $"{soak.HeapBaselineMiB:0.0} / {soak.HeapAfterMiB:0.0}");
        Row("RSS slope, last two-thirds (MiB/min)", $"{soak.RssSlope:+0.00;-0.00}");
        Row("heap floor slope (each minute's lowest heap), last two-thirds (MiB/min)", $"{soak.HeapSlope:+0.00;-0.00}");
        Row("descriptors: baseline / peak / after closing", $"{soak.DescriptorsBaseline:N0} / {soak.DescriptorsPeak:N0} / {soak.DescriptorsAfter:N0}");
        Row("threads: baseline / after closing", $"{soak.ThreadsBaseline} / {soak.ThreadsAfter}");
        Row("server's connection count after closing", $"{soak.ServerConnectionsAfter:N0}");
        md.AppendLine();
        md.AppendLine("| min | RSS (MiB) | heap (MiB) | GC committed (MiB) | descriptors | threads | connections (server) | held (clients) | reconnects | deliveries | publishes |");
        md.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var s in soak.Samples)
        {
            Line($"| {s.Minutes:0.00} | {s.RssMiB:0.0} | {s.HeapMiB:0.0} | {s.CommittedMiB:0.0} | {s.Descriptors:N0} | {s.Threads} | {s.ServerConnections:N0} | {s.Held:N0} | {s.Reconnects:N0} | {s.Deliveries:N0} | {s.Published:N0} |");
        }

        md.AppendLine(end);
        return md.ToString();
    }
}
