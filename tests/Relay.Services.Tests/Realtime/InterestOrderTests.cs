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
    private sealed class RecordingBus : ForwardingBus
    {
        public RecordingBus() => Wrap(new InMemoryBus());

        public List<int> Counts { get; } = [];

        public override ValueTask SendInterestAsync(InterestChange change)
        {
            lock (Counts)
            {
                Counts.Add(change.Subscribers);
            }

            return Inner.SendInterestAsync(change);
        }
    }
}
