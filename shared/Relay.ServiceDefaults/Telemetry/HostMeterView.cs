using System.Diagnostics.Metrics;
using OpenTelemetry.Metrics;

namespace Relay.ServiceDefaults.Telemetry;

/// <summary>
/// What one host's meter provider collects. A provider listens to every meter in the process by name, so without this
/// two hosts in one process (the tests run many) would add up each other's counts: instruments of a meter that another
/// host's <see cref="IMeterFactory"/> created are dropped; process-wide meters (the runtime's) are kept. Relay's
/// histograms in seconds get buckets that fit them.
/// </summary>
internal sealed class HostMeterView(IMeterFactory meters)
{
    // 100 µs to 10 s: publish-to-deliver and Redis round trips lie between a fraction of a millisecond and seconds;
    // the SDK's default buckets (0 to 10,000, made for milliseconds) would put nearly all of them in the first one.
    private static readonly double[] SecondsBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    public MetricStreamConfiguration? Select(Instrument instrument)
    {
        if (instrument.Meter.Scope is { } scope && !ReferenceEquals(scope, meters))
        {
            return MetricStreamConfiguration.Drop;
        }

        if (instrument is Histogram<double> && instrument.Unit == "s" && instrument.Meter.Name.StartsWith("Relay.", StringComparison.Ordinal))
        {
            return new ExplicitBucketHistogramConfiguration { Boundaries = SecondsBuckets };
        }

        return null;
    }
}
