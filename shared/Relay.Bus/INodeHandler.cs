using Relay.Core.Messages;

namespace Relay.Bus;

/// <summary>What an ingress node does with messages delivered to it.</summary>
public interface INodeHandler
{
    /// <summary>Delivers a message to the node's local subscribers. Called in seq order per channel; must not block.</summary>
    ValueTask OnDeliverAsync(RelayMessage message);

    /// <summary>
    /// Deliveries may have been lost (a networked bus reconnected, or fan-out restarted): check each channel's position
    /// and read back what is missing. Never called by a bus that cannot lose deliveries.
    /// </summary>
    ValueTask OnResyncAsync() => ValueTask.CompletedTask;

    /// <summary>
    /// As <see cref="OnResyncAsync()"/>, for the channels <paramref name="channels"/> accepts (app, channel) only: a fan-out
    /// process took over their shard, so only they may have missed deliveries.
    /// </summary>
    ValueTask OnResyncAsync(Func<string, string, bool> channels) => OnResyncAsync();
}
