using Relay.Core.Messages;

namespace Relay.Bus.Retained;

/// <summary>
/// Where MQTT's retained messages live (MQTT 3.1.1 and 5.0 §3.3.1.3): each topic's last retained publish, per app, sent
/// to every new subscription whose filter matches. The in-memory bus keeps them in the process
/// (<see cref="InMemoryRetainedStore"/>); the Redis bus, and the Dapr bus that keeps its state there, in Redis, so every
/// ingress node reads the same ones and a restart keeps them.
/// </summary>
/// <remarks>
/// Each change carries the epoch and seq routing gave the publish: a change older than the topic's current one (two
/// nodes' writes crossing on the way) changes nothing, and neither does one older than a clear made in the last minute.
/// </remarks>
public interface IRetainedStore
{
    /// <summary>
    /// Keeps <paramref name="message"/> (its app, channel, epoch, seq, data) as its topic's retained message, or clears the
    /// topic's when the data is empty. <see cref="RetainedOutcome.Full"/> when the app holds
    /// <paramref name="maxPerApp"/> topics already and this one is new (nothing is kept then).
    /// </summary>
    ValueTask<RetainedOutcome> SetAsync(RelayMessage message, int maxPerApp, CancellationToken cancellationToken);

    /// <summary>Whether a retained publish to <paramref name="topic"/> would be kept (a topic already retained always is).</summary>
    ValueTask<bool> HasRoomForAsync(string app, string topic, int maxPerApp, CancellationToken cancellationToken);

    /// <summary>The retained messages of <paramref name="app"/> whose topics <paramref name="filter"/> (a channel name or pattern) matches.</summary>
    ValueTask<IReadOnlyList<RelayMessage>> MatchingAsync(string app, string filter, CancellationToken cancellationToken);
}

/// <summary>What <see cref="IRetainedStore.SetAsync"/> did.</summary>
public enum RetainedOutcome
{
    /// <summary>The message is now its topic's retained message.</summary>
    Kept,

    /// <summary>The topic's retained message was cleared (an empty payload).</summary>
    Cleared,

    /// <summary>Not kept: the app holds its maximum of topics and this one is new.</summary>
    Full,

    /// <summary>Nothing changed: the topic's retained message, or its clearing, came from a later publish.</summary>
    Superseded,
}
