using System.Collections.Concurrent;
using System.Diagnostics;
using HdrHistogram;

namespace Relay.Bench.Load;

/// <summary>
/// Publish-to-deliver latency in a log-linear histogram (HdrHistogram: exponential buckets of linear sub-buckets,
/// three significant digits). Each thread records into its own histogram, so ten thousand receiving sockets never
/// contend; the histograms are merged when the measurement ends.
/// </summary>
internal sealed class LatencyRecorder
{
    private static readonly long HighestTrackable = TimeSpan.FromSeconds(60).Ticks * (Stopwatch.Frequency / TimeSpan.TicksPerSecond);

    [ThreadStatic]
    private static Dictionary<LatencyRecorder, LongHistogram>? t_histograms;

    private readonly ConcurrentBag<LongHistogram> _all = [];
    private long _since = long.MaxValue;

    /// <summary>Counts only messages published from now on.</summary>
    public void Start() => Volatile.Write(ref _since, Stopwatch.GetTimestamp());

    /// <summary>Stops counting: later deliveries are not recorded.</summary>
    public void Stop() => Volatile.Write(ref _since, long.MaxValue);

    /// <summary>Records the delivery of a message stamped with <paramref name="publishedAt"/> (Stopwatch ticks).</summary>
    public void Record(long publishedAt)
    {
        if (publishedAt < Volatile.Read(ref _since))
        {
            return;
        }

        var now = Stopwatch.GetTimestamp();
        t_histograms ??= [];
        if (!t_histograms.TryGetValue(this, out var histogram))
        {
            histogram = new LongHistogram(HighestTrackable, 3);
            t_histograms[this] = histogram;
            _all.Add(histogram);
        }

        histogram.RecordValue(Math.Clamp(now - publishedAt, 0, HighestTrackable));
    }

    /// <summary>All threads' recordings merged (call after <see cref="Stop"/>).</summary>
    public LatencySummary Summarize()
    {
        var merged = new LongHistogram(HighestTrackable, 3);
        foreach (var histogram in _all)
        {
            merged.Add(histogram);
        }

        double Ms(double percentile) => merged.TotalCount == 0 ? double.NaN : merged.GetValueAtPercentile(percentile) * 1000.0 / Stopwatch.Frequency;
        return new LatencySummary(merged.TotalCount, Ms(50), Ms(90), Ms(99), Ms(99.9), merged.TotalCount == 0 ? double.NaN : merged.GetMaxValue() * 1000.0 / Stopwatch.Frequency);
    }
}

/// <summary>Latency percentiles in milliseconds over <see cref="Count"/> deliveries.</summary>
internal sealed record LatencySummary(long Count, double P50, double P90, double P99, double P999, double Max);
