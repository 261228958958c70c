namespace Relay.Core.Messages;

/// <summary>Where a channel stands: its epoch and its latest seq (0 when nothing was published in this epoch).</summary>
public readonly record struct ChannelPosition(string Epoch, long Seq);
