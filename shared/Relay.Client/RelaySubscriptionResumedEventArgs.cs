namespace Relay.Client;

/// <summary>A subscription was re-established after a reconnection.</summary>
/// <param name="recovered">Whether every missed message follows (the server's <c>recovered</c>).</param>
/// <param name="epoch">The channel's epoch.</param>
/// <param name="seq">The channel's latest seq when the server answered.</param>
public sealed class RelaySubscriptionResumedEventArgs(bool recovered, string? epoch, long seq) : EventArgs
{
    /// <summary>
    /// <c>true</c> when every message missed while disconnected is delivered (in order, before live ones); <c>false</c>
    /// when the gap could not be filled (outside the history window, a new epoch, a pattern, or nothing to resume from).
    /// </summary>
    public bool Recovered { get; } = recovered;

    /// <summary>The channel's epoch.</summary>
    public string? Epoch { get; } = epoch;

    /// <summary>The channel's latest seq when the server answered.</summary>
    public long Seq { get; } = seq;
}
