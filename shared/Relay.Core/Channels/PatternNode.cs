using System.Collections.Concurrent;

namespace Relay.Core.Channels;

// One level of a PatternIndex trie. Only the index's writer (under its lock) changes a node; readers
// load each field once and see either the old or the new value: subscriber arrays are copied on write and swapped,
// and children live in a concurrent dictionary whose reads take no lock.
internal sealed class PatternNode<T> where T : class
{
    private const string PlusKey = "+";

    private readonly PatternNode<T>? _parent;
    private readonly string? _key;
    private ConcurrentDictionary<string, PatternNode<T>>? _children;
    private PatternNode<T>? _plus;
    private T[] _subscribers = [];
    private T[] _hashSubscribers = [];

    public PatternNode(PatternNode<T>? parent, string? key)
    {
        _parent = parent;
        _key = key;
    }

    // Subscribers whose pattern ends at this node.
    public T[] Subscribers => Volatile.Read(ref _subscribers);

    // Subscribers whose pattern is this node's prefix followed by a last level '#'.
    public T[] HashSubscribers => Volatile.Read(ref _hashSubscribers);

    // The child for a '+' level.
    public PatternNode<T>? Plus => Volatile.Read(ref _plus);

    private bool IsEmpty => _subscribers.Length == 0 && _hashSubscribers.Length == 0 && _plus is null && _children is null;

    // The child for a literal level; never the '+' child, so a stray '+' in a channel cannot reach it twice.
    public PatternNode<T>? FindLiteral(ReadOnlySpan<char> level)
    {
        var children = Volatile.Read(ref _children);
        return children is not null && children.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(level, out var child) ? child : null;
    }

    // Writer only.
    public PatternNode<T> GetOrAddChild(ReadOnlySpan<char> level)
    {
        if (level is PlusKey)
        {
            return _plus ?? Publish(ref _plus, new PatternNode<T>(this, PlusKey));
        }

        var children = _children ?? Publish(ref _children, new ConcurrentDictionary<string, PatternNode<T>>(concurrencyLevel: 1, capacity: 1, StringComparer.Ordinal));
        if (children.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(level, out var child))
        {
            return child;
        }

        var key = level.ToString();
        child = new PatternNode<T>(this, key);
        children[key] = child;
        return child;
    }

    // Writer only.
    public PatternNode<T>? FindChild(ReadOnlySpan<char> level) => level is PlusKey ? _plus : FindLiteral(level);

    // Writer only: false when the subscriber is already there.
    public bool AddSubscriber(T subscriber, bool hash)
    {
        ref var subscribers = ref hash ? ref _hashSubscribers : ref _subscribers;
        if (IndexOf(subscribers, subscriber) >= 0)
        {
            return false;
        }

        Volatile.Write(ref subscribers, [.. subscribers, subscriber]);
        return true;
    }

    // Writer only: false when the subscriber was not there. Detaches this node and every ancestor
    // left empty, so removed patterns leave no garbage behind.
    public bool RemoveSubscriber(T subscriber, bool hash)
    {
        ref var subscribers = ref hash ? ref _hashSubscribers : ref _subscribers;
        var current = subscribers;
        var index = IndexOf(current, subscriber);
        if (index < 0)
        {
            return false;
        }

        T[] next = current.Length == 1 ? [] : [.. current.AsSpan(0, index), .. current.AsSpan(index + 1)];
        Volatile.Write(ref subscribers, next);
        for (var node = this; node._parent is { } parent && node.IsEmpty; node = parent)
        {
            parent.Detach(node);
        }

        return true;
    }

    // Writer only.
    public int CountDescendants()
    {
        var count = 0;
        if (_plus is not null)
        {
            count += 1 + _plus.CountDescendants();
        }

        if (_children is not null)
        {
            foreach (var (_, child) in _children)
            {
                count += 1 + child.CountDescendants();
            }
        }

        return count;
    }

    private void Detach(PatternNode<T> child)
    {
        if (ReferenceEquals(child, _plus))
        {
            Volatile.Write(ref _plus, null);
            return;
        }

        var children = _children!;
        children.TryRemove(child._key!, out _);
        if (children.IsEmpty)
        {
            Volatile.Write(ref _children, null);
        }
    }

    private static TValue Publish<TValue>(ref TValue? field, TValue value) where TValue : class
    {
        Volatile.Write(ref field, value);
        return value;
    }

    private static int IndexOf(T[] subscribers, T subscriber)
    {
        for (var i = 0; i < subscribers.Length; i++)
        {
            if (ReferenceEquals(subscribers[i], subscriber))
            {
                return i;
            }
        }

        return -1;
    }
}
