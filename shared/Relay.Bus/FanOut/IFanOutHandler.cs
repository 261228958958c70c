using Relay.Core.Messages;

namespace Relay.Bus.FanOut;

/// <summary>What the fan-out service does with what the bus brings it.</summary>
public interface IFanOutHandler
{
    /// <summary>A sequenced message to deliver to every interested node. Called in seq order per channel; must not block.</summary>
    ValueTask OnSequencedAsync(RelayMessage message);

    /// <summary>A node's interest changed.</summary>
    ValueTask OnInterestAsync(InterestChange change);

    /// <summary>A node stopped (its heartbeat ran out or it left): forget everything it registered.</summary>
    ValueTask OnNodeGoneAsync(string nodeId);

    /// <summary>
    /// This process no longer fans out the channels <paramref name="leaving"/> accepts (app, channel): another process
    /// took their shard. Forget every node's interest in them. Patterns are the bus's to keep: it gives their counts
    /// through <see cref="OnInterestAsync"/>. Never called by a bus with one fan-out.
    /// </summary>
    ValueTask OnChannelsLeftAsync(Func<string, string, bool> leaving) => ValueTask.CompletedTask;

    /// <summary>The channels of <paramref name="app"/> with subscribers, whose names start with <paramref name="prefix"/>.</summary>
    ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken);
}
