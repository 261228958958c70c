using Relay.Bus;
using Relay.Bus.FanOut;
using Relay.Bus.Routing;
using Relay.Core.Messages;

namespace Relay.Testing;

/// <summary>
/// A bus that passes every call to another, real one (given by <see cref="Wrap"/>, as the container makes the inner
/// bus first): a test overrides only the calls it watches or changes, to make a timing real buses cannot be told to make.
/// </summary>
public abstract class ForwardingBus : IRelayBus
{
    private IRelayBus? _inner;

    /// <summary>The bus every call goes on to.</summary>
    protected IRelayBus Inner => _inner ?? throw new InvalidOperationException("no bus to forward to: call Wrap first");

    public virtual bool MayLoseDeliveries => Inner.MayLoseDeliveries;

    /// <summary>Forwards to <paramref name="inner"/> from now on; returns this bus.</summary>
    public IRelayBus Wrap(IRelayBus inner)
    {
        _inner = inner;
        return this;
    }

    public virtual ValueTask<RoutingReply> SendToRoutingAsync(RoutingRequest request, CancellationToken cancellationToken) => Inner.SendToRoutingAsync(request, cancellationToken);

    public virtual ValueTask PublishSequencedAsync(RelayMessage message) => Inner.PublishSequencedAsync(message);

    public virtual ValueTask DeliverToNodeAsync(string nodeId, RelayMessage message) => Inner.DeliverToNodeAsync(nodeId, message);

    public virtual ValueTask SendInterestAsync(InterestChange change) => Inner.SendInterestAsync(change);

    public virtual ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken) =>
        Inner.QueryChannelsAsync(app, prefix, cancellationToken);

    public virtual IDisposable ServeRouting(IRoutingHandler handler) => Inner.ServeRouting(handler);

    public virtual IDisposable ServeFanOut(IFanOutHandler handler) => Inner.ServeFanOut(handler);

    public virtual IDisposable ServeNode(string nodeId, INodeHandler handler) => Inner.ServeNode(nodeId, handler);
}
