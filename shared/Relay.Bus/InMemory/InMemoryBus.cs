using System.Collections.Concurrent;
using Relay.Bus.FanOut;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Bus.InMemory;

/// <summary>
/// The bus inside one process: each hop is a direct call to the registered handler, so per-channel order is the
/// caller's order and nothing is copied or serialized. Handlers must not block (they enqueue and return).
/// </summary>
public sealed class InMemoryBus : IRelayBus
{
    private static readonly RoutingReply NoRouting = new ErrorReply(new RelayError(ErrorCodes.Unavailable, "no routing service is running in this process"));

    private readonly ConcurrentDictionary<string, INodeHandler> _nodes = new(StringComparer.Ordinal);
    private volatile IRoutingHandler? _routing;
    private volatile IFanOutHandler? _fanOut;

    /// <inheritdoc />
    public ValueTask<RoutingReply> SendToRoutingAsync(RoutingRequest request, CancellationToken cancellationToken) =>
        _routing is { } routing ? routing.HandleAsync(request, cancellationToken) : ValueTask.FromResult(NoRouting);

    /// <inheritdoc />
    public ValueTask PublishSequencedAsync(RelayMessage message) =>
        _fanOut is { } fanOut ? fanOut.OnSequencedAsync(message) : ValueTask.CompletedTask;

    /// <inheritdoc />
    public ValueTask DeliverToNodeAsync(string nodeId, RelayMessage message) =>
        _nodes.TryGetValue(nodeId, out var node) ? node.OnDeliverAsync(message) : ValueTask.CompletedTask;

    /// <inheritdoc />
    public ValueTask SendInterestAsync(InterestChange change) =>
        _fanOut is { } fanOut ? fanOut.OnInterestAsync(change) : ValueTask.CompletedTask;

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken) =>
        _fanOut is { } fanOut ? fanOut.QueryChannelsAsync(app, prefix, cancellationToken) : ValueTask.FromResult<IReadOnlyList<ChannelCount>>([]);

    /// <inheritdoc />
    public IDisposable ServeRouting(IRoutingHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (Interlocked.CompareExchange(ref _routing, handler, null) is not null)
        {
            throw new InvalidOperationException("a routing service is already registered on this in-memory bus");
        }

        return new Registration(() => Interlocked.CompareExchange(ref _routing, null, handler));
    }

    /// <inheritdoc />
    public IDisposable ServeFanOut(IFanOutHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (Interlocked.CompareExchange(ref _fanOut, handler, null) is not null)
        {
            throw new InvalidOperationException("a fan-out service is already registered on this in-memory bus");
        }

        return new Registration(() => Interlocked.CompareExchange(ref _fanOut, null, handler));
    }

    /// <inheritdoc />
    public IDisposable ServeNode(string nodeId, INodeHandler handler)
    {
        ArgumentNullException.ThrowIfNull(nodeId);
        ArgumentNullException.ThrowIfNull(handler);
        if (!_nodes.TryAdd(nodeId, handler))
        {
            throw new InvalidOperationException($"ingress node '{nodeId}' is already registered on this in-memory bus");
        }

        return new Registration(() => _nodes.TryRemove(new KeyValuePair<string, INodeHandler>(nodeId, handler)));
    }

    private sealed class Registration(Action dispose) : IDisposable
    {
        private Action? _dispose = dispose;

        public void Dispose() => Interlocked.Exchange(ref _dispose, null)?.Invoke();
    }
}
