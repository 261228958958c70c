using System.Diagnostics.Metrics;

namespace Relay.Bench.Micro.Delivery;

/// <summary>A meter factory of the rig's own: its meters go with the rig.</summary>
internal sealed class RigMeters : IMeterFactory
{
    private readonly List<Meter> _meters = [];

    public Meter Create(MeterOptions options)
    {
        var meter = new Meter(options);
        _meters.Add(meter);
        return meter;
    }

    public void Dispose()
    {
        foreach (var meter in _meters)
        {
            meter.Dispose();
        }
    }
}
