namespace Relay.Bench.Scenarios;

/// <summary>What a soak run measured, and its verdict.</summary>
internal sealed record SoakFigures
{
    public required SoakSpec Spec { get; init; }

    public required IReadOnlyList<SoakSample> Samples { get; init; }

    /// <summary>Connections the client processes held at the end (before closing them).</summary>
    public int Held { get; init; }

    public long Published { get; init; }

    public long Deliveries { get; init; }

    /// <summary>Each held connection's channel total, summed: what <see cref="Deliveries"/> must be when nothing was lost.</summary>
    public long Expected { get; init; }

    public long Lost { get; init; }

    public long Missed { get; init; }

    /// <summary>Messages skipped after the server answered a resume with <c>recovered: false</c>, as the protocol allows.</summary>
    public long Skipped { get; init; }

    public long Duplicates { get; init; }

    public long Reconnects { get; init; }

    public long CleanCloses { get; init; }

    public long Resets { get; init; }

    public long ReconnectFailures { get; init; }

    public long NotRecovered { get; init; }

    public long CutByServer { get; init; }

    public double RssBaselineMiB { get; init; }

    public double RssAfterMiB { get; init; }

    /// <summary>The managed heap after the warm-up, before the connections opened.</summary>
    public double? HeapBaselineMiB { get; init; }

    /// <summary>The managed heap once every connection closed and the host's quiet-time trim ran (a compacting collection).</summary>
    public double? HeapAfterMiB { get; init; }

    public int DescriptorsBaseline { get; init; }

    public int DescriptorsPeak { get; init; }

    public int DescriptorsAfter { get; init; }

    public int ThreadsBaseline { get; init; }

    public int ThreadsAfter { get; init; }

    /// <summary>The server's own count of open connections once the clients were gone.</summary>
    public int? ServerConnectionsAfter { get; init; }

    /// <summary>/proc/loadavg at the start and at the end of the churn (the cores are shared).</summary>
    public string LoadStart { get; init; } = string.Empty;

    public string LoadEnd { get; init; } = string.Empty;

    public double ServerCpuCores { get; init; }

    public double RssFirstThirdMiB => Average(Trend.Thirds(Samples).First, static s => s.RssMiB);

    public double RssLastThirdMiB => Average(Trend.Thirds(Samples).Last, static s => s.RssMiB);

    public double? HeapFirstThirdMiB => HasHeap ? Average(Trend.Thirds(Samples).First, static s => s.HeapMiB!.Value) : null;

    public double? HeapLastThirdMiB => HasHeap ? Average(Trend.Thirds(Samples).Last, static s => s.HeapMiB!.Value) : null;

    /// <summary>MiB a minute over the last two-thirds of the run (least squares).</summary>
    public double RssSlope => SlopeOf(static s => s.RssMiB);

    /// <summary>
    /// MiB a minute of the heap's floor over the last two-thirds: the lowest heap of each minute's samples, least
    /// squares. The heap after the last collection is a sawtooth (it climbs between full collections, which server GC
    /// runs every minute or two here, by 150-250 MiB at 19,000 connections), and a slope through every sample says
    /// more about where the run stopped on the tooth than about what the server keeps.
    /// </summary>
    public double? HeapSlope
    {
        get
        {
            if (!HasHeap)
            {
                return null;
            }

            var settled = Trend.LastTwoThirds(Samples);
            var perMinute = Math.Max(1, (int)Math.Round(1 / Math.Max(Spec.SampleEvery.TotalMinutes, 1e-3)));
            var (x, y) = Trend.Floors(settled.Select(static s => s.Minutes).ToList(), settled.Select(static s => s.HeapMiB!.Value).ToList(), perMinute);
            return Trend.Slope(x, y);
        }
    }

    public bool MemoryFlat => RssSlope < Spec.FlatMiBPerMinute && (HeapSlope ?? 0) < Spec.FlatMiBPerMinute;

    public bool DescriptorsReturned => DescriptorsAfter <= DescriptorsBaseline + SoakSpec.DescriptorTolerance;

    /// <summary>Every held connection got every acknowledged message of its channel once, in order, across its reconnects.</summary>
    public bool CountsExact => Lost == 0 && Missed == 0 && Duplicates == 0 && Deliveries + Skipped == Expected && ReconnectFailures == 0;

    public string Verdict =>
        (MemoryFlat && DescriptorsReturned ? "flat" : "**not flat**") +
        FormattableString.Invariant($": RSS {RssSlope:+0.00;-0.00} MiB/min, heap floor {HeapSlope:+0.00;-0.00} MiB/min over the last two-thirds (threshold {Spec.FlatMiBPerMinute:0.#}); descriptors {DescriptorsBaseline:N0} before, {DescriptorsAfter:N0} after") +
        (DescriptorsReturned ? string.Empty : " (**not back**)") +
        (CountsExact ? "; every delivery counted" + (Skipped == 0 ? string.Empty : FormattableString.Invariant($" ({Skipped:N0} skipped after recovered: false)")) : FormattableString.Invariant($"; **{Lost:N0} lost, {Missed:N0} missed, {Duplicates:N0} duplicated, {ReconnectFailures:N0} reconnects failed**"));

    private bool HasHeap => Samples.Count > 0 && Samples.All(static s => s.HeapMiB is not null);

    private static double Average(IReadOnlyList<SoakSample> samples, Func<SoakSample, double> value) => samples.Count == 0 ? 0 : samples.Average(value);

    private double SlopeOf(Func<SoakSample, double> value)
    {
        var settled = Trend.LastTwoThirds(Samples);
        return Trend.Slope(settled.Select(static s => s.Minutes).ToList(), settled.Select(value).ToList());
    }
}
