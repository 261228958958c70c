namespace Relay.Ingress.Subscriptions;

/// <summary>
/// A connection's subscriptions by channel: a plain array searched in order, because a connection holds a few
/// (at most MaxSubscriptionsPerConnection, 1000 by default) and changes them rarely, and an idle connection should
/// not pay for a hash table. A mutable struct: keep it in a non-readonly field and use it from one thread.
/// </summary>
internal struct SubscriptionList
{
    private Subscription[]? _items;

    public int Count { get; private set; }

    /// <summary>The subscriptions, in no particular order.</summary>
    public readonly ReadOnlySpan<Subscription> Items => _items.AsSpan(0, Count);

    /// <summary>Adds a subscription to a channel not in the list.</summary>
    public void Add(Subscription subscription)
    {
        if (_items is null || Count == _items.Length)
        {
            Array.Resize(ref _items, Math.Max(2, Count * 2));
        }

        _items[Count++] = subscription;
    }

    /// <summary>Removes the subscription to <paramref name="channel"/>, if there is one.</summary>
    public bool Remove(string channel, out Subscription removed)
    {
        for (var i = 0; i < Count; i++)
        {
            if (string.Equals(_items![i].Channel, channel, StringComparison.Ordinal))
            {
                removed = _items[i];
                _items[i] = _items[--Count];
                _items[Count] = null!;
                return true;
            }
        }

        removed = null!;
        return false;
    }

    public void Clear()
    {
        _items = null;
        Count = 0;
    }
}
