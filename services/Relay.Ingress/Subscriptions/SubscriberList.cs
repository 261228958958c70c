namespace Relay.Ingress.Subscriptions;

/// <summary>
/// The subscribers of one channel on this node, built so that neither subscribing nor dispatching grows worse than
/// linearly with subscribers: a dispatch reads one snapshot (an array and how much of it is in use) without a lock;
/// a subscribe writes into spare capacity beyond every reader's snapshot and publishes a new one (the array
/// doubles when full); an unsubscribe empties its slot in place (a dispatch racing it may or may not deliver to the
/// leaving subscriber) and the array is compacted once half of it is empty. Adds and removes are amortized O(1)
/// where copying the array on every change made building a 100,000-subscriber channel quadratic. Writers hold the
/// index's write gate.
/// </summary>
internal sealed class SubscriberList
{
    private Snapshot _snapshot = Snapshot.Empty;

    /// <summary>Subscribers in the list.</summary>
    public int Count { get; private set; }

    /// <summary>What a dispatch iterates: slots 0 to <see cref="Snapshot.Length"/>, skipping empty ones.</summary>
    public Snapshot Current => Volatile.Read(ref _snapshot);

    public void Add(Subscription subscription)
    {
        var current = _snapshot;
        var items = current.Items;
        var length = current.Length;
        if (length == items.Length)
        {
            // Full: a new array with room to double, holding only live subscribers (readers keep the old one).
            items = Compact(current, Math.Max(1, Count * 2));
            length = Count;
        }

        items[length] = subscription;
        subscription.Slot = length;
        Volatile.Write(ref _snapshot, new Snapshot(items, length + 1));
        Count++;
    }

    public bool Remove(Subscription subscription)
    {
        var current = _snapshot;
        var slot = subscription.Slot;
        if (slot >= current.Length || !ReferenceEquals(current.Items[slot], subscription))
        {
            return false;
        }

        Volatile.Write(ref current.Items[slot], null);
        Count--;
        if (Count > 0 && Count <= current.Length / 2 && current.Length >= 8)
        {
            Volatile.Write(ref _snapshot, new Snapshot(Compact(current, Count * 2), Count));
        }

        return true;
    }

    private Subscription?[] Compact(Snapshot current, int capacity)
    {
        var items = new Subscription?[Math.Max(capacity, Count + 1)];
        var next = 0;
        for (var i = 0; i < current.Length; i++)
        {
            if (current.Items[i] is { } live)
            {
                items[next] = live;
                live.Slot = next++;
            }
        }

        return items;
    }

    /// <summary>An array and how many of its slots are in use (empty ones are unsubscribed).</summary>
    internal sealed class Snapshot(Subscription?[] items, int length)
    {
        public static readonly Snapshot Empty = new([], 0);

        public Subscription?[] Items { get; } = items;

        public int Length { get; } = length;
    }
}
