namespace Relay.Bus.Retained;

/// <summary>Which of two changes of a topic's retained message came from the later publish (shared by the stores).</summary>
public static class RetainedOrder
{
    /// <summary>How long a clear is remembered, so a retained write older than it arriving late changes nothing.</summary>
    public static readonly TimeSpan ClearRemembered = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Whether a publish at (<paramref name="epoch"/>, <paramref name="seq"/>) comes after the one at
    /// (<paramref name="currentEpoch"/>, <paramref name="currentSeq"/>): a later seq of the same epoch, or any seq of
    /// another epoch (the channel started again after its history was lost: the newest write wins).
    /// </summary>
    public static bool IsLater(string epoch, long seq, string currentEpoch, long currentSeq) =>
        !string.Equals(epoch, currentEpoch, StringComparison.Ordinal) || seq > currentSeq;
}
