using Microsoft.Extensions.DependencyInjection;
using Relay.Bus;
using Relay.Bus.FanOut;
using Relay.Bus.InMemory;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Ingress;
using Relay.Ingress.Subscriptions;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// Fan-out takes a node's subscriber count for a channel as absolute, so the node must hand counts to the bus in the
/// order it computed them, however many connections subscribe and unsubscribe at once.
/// </summary>
public sealed class InterestOrderTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    [Fact]
    public void ConcurrentSubscribes_ReachTheBusInCountOrder_AndUnsubscribesBackToZero()
    {
        const int threads = 8;
        const int perThread = 4000;
        var bus = new RecordingBus();
        using var node = ActivatorUtilities.CreateInstance<IngressNode>(fixture.Server.Services, bus);
        var subscriptions = new Subscription[threads][];
        using var start = new Barrier(threads);

        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            subscriptions[t] = [.. Enumerable.Range(0, perThread).Select(_ => new Subscription(NoSink.Instance, "app", "order:one", false))];
            start.SignalAndWait();
            foreach (var subscription in subscriptions[t])
            {
                node.AddSubscriptionAsync(subscription).AsTask().GetAwaiter().GetResult();
            }
        });

        Assert.Equal(Enumerable.Range(1, threads * perThread), bus.Counts);
        bus.Counts.Clear();

        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            start.SignalAndWait();
            foreach (var subscription in subscriptions[t])
            {
                node.RemoveSubscriptionAsync(subscription).AsTask().GetAwaiter().GetResult();
            }
        });

        Assert.Equal(Enumerable.Range(0, threads * perThread).Reverse(), bus.Counts);
    }

    private sealed class NoSink : IMessageSink
    {
        public static readonly NoSink Instance = new();

        public void Send(RelayMessage message)
        {
        }

        public void Lost(Subscription subscription)
        {
        }
    }

    /// <summary>A real in-memory bus that also notes, in arrival order, every count handed to it.</summary>
    private sealed class RecordingBus : IRelayBus
    {
        private readonly InMemoryBus _inner = new();

        public List<int> Counts { get; } = [];

        public ValueTask SendInterestAsync(InterestChange change)
        {
            lock (Counts)
            {
                Counts.Add(change.Subscribers);
            }

            return _inner.SendInterestAsync(change);
        }

        public ValueTask<RoutingReply> SendToRoutingAsync(RoutingRequest request, CancellationToken cancellationToken) => _inner.SendToRoutingAsync(request, cancellationToken);

        public ValueTask PublishSequencedAsync(RelayMessage message) => _inner.PublishSequencedAsync(message);

        public ValueTask DeliverToNodeAsync(string nodeId, RelayMessage message) => _inner.DeliverToNodeAsync(nodeId, message);

        public ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken) => _inner.QueryChannelsAsync(app, prefix, cancellationToken);

        public IDisposable ServeRouting(IRoutingHandler handler) => _inner.ServeRouting(handler);

        public IDisposable ServeFanOut(IFanOutHandler handler) => _inner.ServeFanOut(handler);

        public IDisposable ServeNode(string nodeId, INodeHandler handler) => _inner.ServeNode(nodeId, handler);
    }
}
