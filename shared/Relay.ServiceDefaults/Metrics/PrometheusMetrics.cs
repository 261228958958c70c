using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Relay.ServiceDefaults.Metrics;

/// <summary>
/// Collects every instrument of the <c>Relay.*</c> meters through a <see cref="MeterListener"/> and renders them
/// as Prometheus text (the exporter packages do not restore here). Counters become <c>_total</c>, histograms get
/// cumulative buckets; tags become labels.
/// </summary>
public sealed class PrometheusMetrics : IDisposable
{
    /// <summary>Meters whose name starts with this are collected.</summary>
    public const string MeterPrefix = "Relay";

    private static readonly double[] Buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(Instrument Instrument, string Labels), Series> _series = new();
    private readonly Lock _collectGate = new();

    /// <summary>Starts listening to the meters <paramref name="meters"/> creates (so two hosts in one process stay apart).</summary>
    public PrometheusMetrics(IMeterFactory meters)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, meters) && instrument.Meter.Name.StartsWith(MeterPrefix, StringComparison.Ordinal))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(instrument, value, tags));
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => Record(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Record(instrument, value, tags));
        _listener.Start();
    }

    /// <summary>Renders every series in the Prometheus text format (version 0.0.4).</summary>
    public string Render()
    {
        lock (_collectGate)
        {
            // Observable instruments report now; gauges keep only this latest value.
            _listener.RecordObservableInstruments();
        }

        var text = new StringBuilder();
        foreach (var group in _series.GroupBy(static s => s.Key.Instrument).OrderBy(static g => g.Key.Name, StringComparer.Ordinal))
        {
            var instrument = group.Key;
            var name = Sanitize(instrument.Name, instrument.Unit);
            var kind = instrument switch
            {
                Counter<long> or Counter<int> or Counter<double> or ObservableCounter<long> or ObservableCounter<int> or ObservableCounter<double> => "counter",
                Histogram<long> or Histogram<int> or Histogram<double> => "histogram",
                _ => "gauge",
            };
            var metric = kind == "counter" ? name + "_total" : name;
            if (!string.IsNullOrEmpty(instrument.Description))
            {
                text.Append("# HELP ").Append(metric).Append(' ').Append(instrument.Description).Append('\n');
            }

            text.Append("# TYPE ").Append(metric).Append(' ').Append(kind).Append('\n');
            foreach (var ((_, labels), series) in group)
            {
                series.Write(text, metric, labels, kind == "histogram");
            }
        }

        return text.ToString();
    }

    /// <inheritdoc />
    public void Dispose() => _listener.Dispose();

    private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var labels = Labels(tags);
        var series = _series.GetOrAdd((instrument, labels), static key => new Series(key.Instrument));
        series.Add(value);
    }

    private static string Labels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.IsEmpty)
        {
            return string.Empty;
        }

        var text = new StringBuilder();
        foreach (var (key, value) in tags)
        {
            text.Append(text.Length == 0 ? string.Empty : ",").Append(Sanitize(key, null)).Append("=\"")
                .Append(Convert.ToString(value, CultureInfo.InvariantCulture)?.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal))
                .Append('"');
        }

        return text.ToString();
    }

    private static string Sanitize(string name, string? unit)
    {
        var text = new StringBuilder(name.Length + 8);
        foreach (var c in name)
        {
            text.Append(char.IsAsciiLetterOrDigit(c) ? c : '_');
        }

        if (unit is "s")
        {
            text.Append("_seconds");
        }

        return text.ToString();
    }

    private sealed class Series(Instrument instrument)
    {
        private readonly bool _isGauge = instrument is ObservableGauge<long> or ObservableGauge<int> or ObservableGauge<double> or ObservableCounter<long> or ObservableCounter<int> or ObservableCounter<double> or ObservableUpDownCounter<long> or ObservableUpDownCounter<int>;
        private readonly bool _isHistogram = instrument is Histogram<long> or Histogram<int> or Histogram<double>;
        private readonly long[] _buckets = new long[Buckets.Length + 1];
        private readonly Lock _gate = new();
        private double _value;
        private long _count;

        public void Add(double value)
        {
            lock (_gate)
            {
                if (_isGauge)
                {
                    _value = value;
                    return;
                }

                _value += value;
                if (_isHistogram)
                {
                    _count++;
                    var i = 0;
                    while (i < Buckets.Length && value > Buckets[i])
                    {
                        i++;
                    }

                    _buckets[i]++;
                }
            }
        }

        public void Write(StringBuilder text, string metric, string labels, bool histogram)
        {
            lock (_gate)
            {
                if (!histogram)
                {
                    text.Append(metric).Append(labels.Length == 0 ? string.Empty : "{" + labels + "}").Append(' ').Append(_value.ToString(CultureInfo.InvariantCulture)).Append('\n');
                    return;
                }

                var cumulative = 0L;
                var separator = labels.Length == 0 ? string.Empty : labels + ",";
                for (var i = 0; i < Buckets.Length; i++)
                {
                    cumulative += _buckets[i];
                    text.Append(metric).Append("_bucket{").Append(separator).Append("le=\"").Append(Buckets[i].ToString(CultureInfo.InvariantCulture)).Append("\"} ").Append(cumulative).Append('\n');
                }

                text.Append(metric).Append("_bucket{").Append(separator).Append("le=\"+Inf\"} ").Append(_count).Append('\n');
                text.Append(metric).Append("_sum").Append(labels.Length == 0 ? string.Empty : "{" + labels + "}").Append(' ').Append(_value.ToString(CultureInfo.InvariantCulture)).Append('\n');
                text.Append(metric).Append("_count").Append(labels.Length == 0 ? string.Empty : "{" + labels + "}").Append(' ').Append(_count).Append('\n');
            }
        }
    }
}
