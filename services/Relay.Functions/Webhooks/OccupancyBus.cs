using Relay.Bus;
using Relay.Bus.FanOut;
using Relay.Bus.Routing;
using Relay.Core.Messages;

namespace Relay.Functions.Webhooks;

/// <summary>
/// The bus as it is, except that the fan-out handler it is given is wrapped to tell <see cref="OccupancyTracker"/> each
/// interest change fan-out applies. Installed only when a webhook asks for occupancy events; every other call passes
/// straight through.
/// </summary>
internal sealed class OccupancyBus(IRelayBus inner, OccupancyTracker tracker) : IRelayBus
{
    public IRelayBus Inner => inner;

    public bool MayLoseDeliveries => inner.MayLoseDeliveries;

    public ValueTask<RoutingReply> SendToRoutingAsync(RoutingRequest request, CancellationToken cancellationToken) => inner.SendToRoutingAsync(request, cancellationToken);

    public ValueTask PublishSequencedAsync(RelayMessage message) => inner.PublishSequencedAsync(message);

    public ValueTask DeliverToNodeAsync(string nodeId, RelayMessage message) => inner.DeliverToNodeAsync(nodeId, message);

    public ValueTask SendInterestAsync(InterestChange change) => inner.SendInterestAsync(change);

    public ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken) => inner.QueryChannelsAsync(app, prefix, cancellationToken);

    public IDisposable ServeRouting(IRoutingHandler handler) => inner.ServeRouting(handler);

    public IDisposable ServeFanOut(IFanOutHandler handler) => inner.ServeFanOut(new Watched(handler, tracker));

    public IDisposable ServeNode(string nodeId, INodeHandler handler) => inner.ServeNode(nodeId, handler);

    private sealed class Watched(IFanOutHandler handler, OccupancyTracker tracker) : IFanOutHandler
    {
        public ValueTask OnSequencedAsync(RelayMessage message) => handler.OnSequencedAsync(message);

        public ValueTask OnInterestAsync(InterestChange change)
        {
            var applied = handler.OnInterestAsync(change);
            tracker.Apply(change);
            return applied;
        }

        public ValueTask OnNodeGoneAsync(string nodeId)
        {
            var applied = handler.OnNodeGoneAsync(nodeId);
            tracker.RemoveNode(nodeId);
            return applied;
        }

        public ValueTask OnChannelsLeftAsync(Func<string, string, bool> leaving)
        {
            var applied = handler.OnChannelsLeftAsync(leaving);
            tracker.Forget(leaving);
            return applied;
        }

        public ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken) =>
            handler.QueryChannelsAsync(app, prefix, cancellationToken);
    }
}
