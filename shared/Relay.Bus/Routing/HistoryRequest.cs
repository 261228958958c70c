namespace Relay.Bus.Routing;

/// <summary>
/// Read history. With <see cref="AfterSeq"/> it reads forward (oldest first) from just after that seq, for recovery;
/// otherwise it reads the newest <see cref="Limit"/> messages before <see cref="Before"/> (returned oldest first).
/// </summary>
/// <param name="MaxBytes">
/// For a backward read: the page stops once its messages' data would pass this many bytes (it keeps the newest, at
/// least one) and says <see cref="HistoryReply.Truncated"/>, so that a page the caller will cut to its own budget is
/// never read, copied and sent whole first. 0 reads up to <see cref="Limit"/> whatever their size.
/// </param>
public sealed record HistoryRequest(string App, string Channel, int Limit, long? Before = null, long? AfterSeq = null, long MaxBytes = 0)
    : RoutingRequest(App, Channel);
