namespace Relay.Bus.Routing;

/// <summary>
/// Read history. With <see cref="AfterSeq"/> it reads forward (oldest first) from just after that seq, for recovery;
/// otherwise it reads the newest <see cref="Limit"/> messages before <see cref="Before"/> (returned oldest first).
/// </summary>
public sealed record HistoryRequest(string App, string Channel, int Limit, long? Before = null, long? AfterSeq = null)
    : RoutingRequest(App, Channel);
