using Relay.Core.Messages;

namespace Relay.Bus;

/// <summary>What an ingress node does with messages delivered to it.</summary>
public interface INodeHandler
{
    /// <summary>Delivers a message to the node's local subscribers. Called in seq order per channel; must not block.</summary>
    ValueTask OnDeliverAsync(RelayMessage message);
}
