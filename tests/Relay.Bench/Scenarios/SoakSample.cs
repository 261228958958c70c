namespace Relay.Bench.Scenarios;

/// <summary>
/// The server at one moment of a soak run: minutes since the churn began, resident memory, the managed heap's objects
/// after the last collection (heap size less fragmentation) and the memory the GC had committed then (from /metrics), open descriptors and threads (/proc), the
/// connections it counts, the connections the client processes hold, and the run's reconnects, deliveries and
/// acknowledged publishes so far.
/// </summary>
internal sealed record SoakSample(
    double Minutes,
    double RssMiB,
    double? HeapMiB,
    double? CommittedMiB,
    int Descriptors,
    int Threads,
    int? ServerConnections,
    int Held,
    long Reconnects,
    long Deliveries,
    long Published);
