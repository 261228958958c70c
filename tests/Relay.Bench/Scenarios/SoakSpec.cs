namespace Relay.Bench.Scenarios;

/// <summary>
/// The soak run's sizes: <paramref name="Connections"/> subscribed connections held for <paramref name="Duration"/> by
/// client processes of <paramref name="PerProcess"/> each, <paramref name="ChurnPerSecond"/> of them closed (half with a
/// close frame, half reset) and resumed with <c>since</c> every second, while one publisher sends
/// <paramref name="Rate"/> acknowledged messages a second round-robin over <paramref name="Channels"/> channels.
/// The server is sampled every <paramref name="SampleEvery"/>; its memory is flat when the least-squares slope over the
/// last two-thirds of the run stays under <paramref name="FlatMiBPerMinute"/>.
/// </summary>
internal sealed record SoakSpec(
    int Connections,
    int PerProcess,
    TimeSpan Duration,
    double ChurnPerSecond,
    int Channels,
    int Rate,
    int Payload,
    TimeSpan SampleEvery,
    double FlatMiBPerMinute)
{
    /// <summary>
    /// MiB a minute under which RSS and the managed heap count as flat: a run of 5 minutes that grew 10 MiB is noise of
    /// the GC's budgets at 19,000 connections (about 200 MiB), while a leak of 200 bytes per reconnect at 190 a second
    /// (2.2 MiB a minute) is above it.
    /// </summary>
    public const double DefaultFlatMiBPerMinute = 2;

    /// <summary>Descriptors the server may hold above its baseline once every client is gone (the runtime's own come and go).</summary>
    public const int DescriptorTolerance = 8;
}
