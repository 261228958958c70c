using System.Diagnostics.Metrics;

namespace Relay.Bus.Redis.Tests;

/// <summary>Reads the Redis bus meter's observable instruments of one process (its meter factory) in tests.</summary>
internal static class MeterReading
{
    /// <summary>The current value of <paramref name="instrument"/> of the Redis bus meter that <paramref name="meters"/> made.</summary>
    public static long Read(IMeterFactory meters, string instrument)
    {
        long value = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (found, l) =>
        {
            if (found.Meter.Name == "Relay.Bus.Redis" && found.Name == instrument && ReferenceEquals(found.Meter.Scope, meters))
            {
                l.EnableMeasurementEvents(found);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, measurement, _, _) => value = measurement);
        listener.SetMeasurementEventCallback<int>((_, measurement, _, _) => value = measurement);
        listener.Start();
        listener.RecordObservableInstruments();
        return value;
    }
}
