using Relay.Bus.FanOut;
using Relay.Bus.Routing;
using Relay.Core.Messages;

namespace Relay.Bus;

/// <summary>
/// The one abstraction between services: send to a routing shard, hand sequenced messages to fan-out, deliver to an
/// ingress node, and carry interest changes. Implementations: in-memory (standalone and tests), Redis, Dapr.
/// Delivery calls keep per-channel order: a caller that calls in seq order is delivered in seq order.
/// </summary>
public interface IRelayBus
{
    /// <summary>Sends a request to the routing shard that owns its app and channel and waits for the reply.</summary>
    ValueTask<RoutingReply> SendToRoutingAsync(RoutingRequest request, CancellationToken cancellationToken);

    /// <summary>Routing hands a sequenced message to fan-out.</summary>
    ValueTask PublishSequencedAsync(RelayMessage message);

    /// <summary>
    /// Fan-out delivers a message to one ingress node. Never blocks: the in-memory bus calls the node, the Redis bus
    /// posts to the node's outbox; both complete synchronously. Called in seq order per channel.
    /// </summary>
    ValueTask DeliverToNodeAsync(string nodeId, RelayMessage message);

    /// <summary>
    /// An ingress node tells fan-out its interest changed. Does not fail for a transport problem: a networked bus keeps
    /// what the node registered and writes it again when it can.
    /// </summary>
    ValueTask SendInterestAsync(InterestChange change);

    /// <summary>Asks fan-out which channels of an app have subscribers.</summary>
    ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken);

    /// <summary>Registers this process as a routing shard owner.</summary>
    IDisposable ServeRouting(IRoutingHandler handler);

    /// <summary>Registers this process as fan-out.</summary>
    IDisposable ServeFanOut(IFanOutHandler handler);

    /// <summary>Registers an ingress node under <paramref name="nodeId"/>.</summary>
    IDisposable ServeNode(string nodeId, INodeHandler handler);

    /// <summary>
    /// Whether a delivery can be lost on the way (a networked bus that is at most once): nodes then watch each channel's
    /// seqs and read a gap back from history before going on.
    /// </summary>
    bool MayLoseDeliveries => false;
}
