using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Services.Tests.Subscriptions;

public sealed class SubscriberListTests
{
    private sealed class NoSink : IMessageSink
    {
        public void Send(RelayMessage message)
        {
        }

        public void Lost(Subscription subscription)
        {
        }
    }

    private static readonly NoSink Sink = new();

    private static Subscription NewSubscription() => new(Sink, "app", "channel", isPattern: false);

    private static HashSet<Subscription> Live(SubscriberList list)
    {
        var snapshot = list.Current;
        return [.. snapshot.Items.Take(snapshot.Length).OfType<Subscription>()];
    }

    [Fact]
    public void RandomAddsAndRemoves_KeepExactlyTheLiveSubscribers()
    {
        var random = new Random(42);
        var list = new SubscriberList();
        var model = new List<Subscription>();
        for (var step = 0; step < 20_000; step++)
        {
            if (model.Count == 0 || random.Next(3) > 0)
            {
                var added = NewSubscription();
                list.Add(added);
                model.Add(added);
            }
            else
            {
                var index = random.Next(model.Count);
                Assert.True(list.Remove(model[index]));
                Assert.False(list.Remove(model[index]), "a subscription was removed twice");
                model.RemoveAt(index);
            }

            if (step % 997 == 0)
            {
                Assert.Equal(model.Count, list.Count);
                Assert.True(Live(list).SetEquals(model));
            }
        }

        Assert.True(Live(list).SetEquals(model));
    }

    [Fact]
    public void ASnapshotBeingIterated_StaysValidWhileTheListChanges()
    {
        var list = new SubscriberList();
        var first = Enumerable.Range(0, 100).Select(_ => NewSubscription()).ToList();
        first.ForEach(list.Add);
        var snapshot = list.Current;

        // Growing, removing and compacting after the snapshot was taken leave it whole: it still holds what it held,
        // less whatever was removed since (removal empties the slot in place).
        foreach (var subscription in first.Take(80))
        {
            list.Remove(subscription);
        }

        for (var i = 0; i < 500; i++)
        {
            list.Add(NewSubscription());
        }

        var seen = snapshot.Items.Take(snapshot.Length).OfType<Subscription>().ToList();
        Assert.Equal(100, snapshot.Length);
        Assert.True(seen.All(first.Contains));
        Assert.Equal(520, list.Count);
    }

    [Fact]
    public void BuildingAndEmptyingAHundredThousandSubscriberChannel_CostsLinearMemory()
    {
        const int subscribers = 100_000;
        var all = Enumerable.Range(0, subscribers).Select(_ => NewSubscription()).ToArray();
        var list = new SubscriberList();

        var before = GC.GetAllocatedBytesForCurrentThread();
        foreach (var subscription in all)
        {
            list.Add(subscription);
        }

        var adding = GC.GetAllocatedBytesForCurrentThread() - before;
        before = GC.GetAllocatedBytesForCurrentThread();
        foreach (var subscription in all)
        {
            list.Remove(subscription);
        }

        var removing = GC.GetAllocatedBytesForCurrentThread() - before;

        // Copying the array on every change would allocate about n²/2 references: 40 GB here. Doubling and a small
        // snapshot per add stay within a few dozen bytes per subscriber.
        Assert.True(adding < subscribers * 80L, $"adding {subscribers} subscribers allocated {adding} bytes");
        Assert.True(removing < subscribers * 24L, $"removing {subscribers} subscribers allocated {removing} bytes");
        Assert.Equal(0, list.Count);
    }
}
