namespace Relay.Core.Messages;

/// <summary>Where a channel stands: its epoch and its latest seq (0 when nothing was published in this epoch).</summary>
public readonly record struct ChannelPosition(string Epoch, long Seq)
{
    /// <summary>
    /// The number of the channel's last presence event in the epoch, where the engine numbers them (Redis: nodes read
    /// missed presence events back by it); 0 elsewhere. Internal to the bus: never sent to clients.
    /// </summary>
    public long PresenceSeq { get; init; }
}
