using System.Diagnostics.Metrics;
using Relay.Redis.Internal;

namespace Relay.Redis.Tests;

/// <summary>
/// Reads the <c>Relay.Redis</c> instruments of one meter factory with a <see cref="MeterListener"/>, the way the
/// <c>/metrics</c> endpoint does: observable instruments are read on demand, histogram records are counted.
/// </summary>
public sealed class MetricsProbe : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly Dictionary<string, long> _values = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _recorded = new(StringComparer.Ordinal);

    public MetricsProbe(IMeterFactory meters)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, meters) && instrument.Meter.Name == RedisMetrics.MeterName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, _, tags, _) => Record(instrument, 1, tags));
        _listener.Start();
    }

    /// <summary>The current value of an observable instrument's series; throws (naming what there is) when it has none.</summary>
    public long Read(string instrument, string connection, string? kind = null)
    {
        _listener.RecordObservableInstruments();
        lock (_values)
        {
            return _values.TryGetValue(Key(instrument, connection, kind), out var value)
                ? value
                : throw new InvalidOperationException($"No series {Key(instrument, connection, kind)}; there are: {string.Join(", ", _values.Keys)}");
        }
    }

    /// <summary>How many values a histogram series recorded.</summary>
    public long Recorded(string instrument, string connection)
    {
        lock (_values)
        {
            return _recorded.GetValueOrDefault(Key(instrument, connection, null));
        }
    }

    /// <summary>Polls <see cref="Read"/> until it returns <paramref name="expected"/>.</summary>
    public Task UntilAsync(string instrument, string connection, string? kind, Func<long, bool> expected, string what) =>
        Wait.UntilAsync(() => Task.FromResult(expected(Read(instrument, connection, kind))), TimeSpan.FromSeconds(10), what);

    private void Record(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        string? connection = null;
        string? kind = null;
        foreach (var (key, tag) in tags)
        {
            if (key == "connection")
            {
                connection = (string?)tag;
            }
            else if (key == "kind")
            {
                kind = (string?)tag;
            }
        }

        var series = Key(instrument.Name, connection ?? "", kind);
        lock (_values)
        {
            if (instrument is Histogram<double>)
            {
                _recorded[series] = _recorded.GetValueOrDefault(series) + value;
            }
            else
            {
                _values[series] = value;
            }
        }
    }

    private static string Key(string instrument, string connection, string? kind) =>
        kind is null ? $"{instrument}{{connection={connection}}}" : $"{instrument}{{connection={connection},kind={kind}}}";

    public void Dispose() => _listener.Dispose();
}
