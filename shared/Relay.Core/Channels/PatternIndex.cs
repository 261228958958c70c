namespace Relay.Core.Channels;

/// <summary>
/// Maps MQTT-style patterns (<c>+</c> one level, <c>#</c> any number of trailing levels, including none) to
/// subscribers, and finds every subscriber whose pattern matches a channel.
/// </summary>
/// <remarks>
/// A trie of levels: matching visits only the nodes whose pattern prefix matches the channel's, so its cost follows
/// the channel's depth, not the number of patterns, and it allocates nothing. Thread-safe: <see cref="Match"/> takes
/// no lock and may run while other threads <see cref="Add"/> or <see cref="Remove"/>; writers are serialized.
/// A match running during a write sees each pattern either before or after that write.
/// </remarks>
/// <typeparam name="T">The subscriber type; compared by reference equality.</typeparam>
public sealed class PatternIndex<T> where T : class
{
    private readonly PatternNode<T> _root = new(null, null);
    private readonly Lock _writeGate = new();
    private int _count;

    /// <summary>The number of (pattern, subscriber) pairs held.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Adds <paramref name="subscriber"/> under <paramref name="pattern"/>; false when it was already there.</summary>
    /// <exception cref="ArgumentException"><paramref name="pattern"/> is not valid (see <see cref="ChannelName.IsValidTopicFilter"/>: the protocol's patterns, and MQTT's with empty levels).</exception>
    public bool Add(string pattern, T subscriber)
    {
        ArgumentNullException.ThrowIfNull(subscriber);
        if (!ChannelName.IsValidTopicFilter(pattern, out var error))
        {
            throw new ArgumentException(error, nameof(pattern));
        }

        lock (_writeGate)
        {
            var (node, hash) = Walk(pattern, create: true);
            if (!node!.AddSubscriber(subscriber, hash))
            {
                return false;
            }

            Interlocked.Increment(ref _count);
            return true;
        }
    }

    /// <summary>Removes <paramref name="subscriber"/> from <paramref name="pattern"/>; false when it was not there.</summary>
    public bool Remove(string pattern, T subscriber)
    {
        ArgumentNullException.ThrowIfNull(subscriber);
        if (!ChannelName.IsValidTopicFilter(pattern, out _))
        {
            return false;
        }

        lock (_writeGate)
        {
            var (node, hash) = Walk(pattern, create: false);
            if (node is null || !node.RemoveSubscriber(subscriber, hash))
            {
                return false;
            }

            Interlocked.Decrement(ref _count);
            return true;
        }
    }

    /// <summary>
    /// Appends to <paramref name="results"/> each subscriber with a pattern matching <paramref name="channel"/>, once per
    /// matching pattern: a subscriber added under both <c>a/+</c> and <c>a/#</c> is appended twice for <c>a/b</c>.
    /// Allocates nothing beyond growing <paramref name="results"/>.
    /// </summary>
    public void Match(string channel, List<T> results)
    {
        ArgumentNullException.ThrowIfNull(channel);
        ArgumentNullException.ThrowIfNull(results);
        if (channel.Length == 0)
        {
            return;
        }

        if (channel[0] == '$')
        {
            // MQTT 4.7.2: a pattern starting with a wildcard does not match a name starting with '$' ($SYS/…): only literal first levels.
            var end = LevelEnd(channel, 0);
            if (_root.FindLiteral(channel.AsSpan(0, end)) is { } first)
            {
                Visit(first, channel, end + 1, results);
            }

            return;
        }

        Visit(_root, channel, 0, results);
    }

    // The trie's nodes below the root; tests read it (by reflection) to check that removal prunes.
    internal int CountNodes()
    {
        lock (_writeGate)
        {
            return _root.CountDescendants();
        }
    }

    // start > channel.Length means every level has been consumed.
    private static void Visit(PatternNode<T> node, string channel, int start, List<T> results)
    {
        // A '#' here matches whatever is left, even nothing: MQTT's "sport/#" matches "sport".
        AddAll(node.HashSubscribers, results);
        if (start > channel.Length)
        {
            AddAll(node.Subscribers, results);
            return;
        }

        var end = LevelEnd(channel, start);
        var level = channel.AsSpan(start, end - start);
        var next = end + 1;
        var child = node.FindLiteral(level);
        if (child is not null)
        {
            Visit(child, channel, next, results);
        }

        // '+' stands for one level, an empty one too (MQTT: "+/+" matches "/a"; only MQTT topic names have empty levels).
        var plus = node.Plus;
        if (plus is not null)
        {
            Visit(plus, channel, next, results);
        }
    }

    private static int LevelEnd(string value, int start)
    {
        var slash = value.IndexOf('/', start);
        return slash < 0 ? value.Length : slash;
    }

    private static void AddAll(T[] subscribers, List<T> results)
    {
        foreach (var subscriber in subscribers)
        {
            results.Add(subscriber);
        }
    }

    // The node holding a (valid) pattern's subscribers, and whether they sit in its '#' set; null when absent.
    private (PatternNode<T>? Node, bool Hash) Walk(string pattern, bool create)
    {
        var node = _root;
        var start = 0;
        while (true)
        {
            var end = LevelEnd(pattern, start);
            var level = pattern.AsSpan(start, end - start);
            if (level is "#")
            {
                return (node, true);
            }

            node = create ? node.GetOrAddChild(level) : node.FindChild(level);
            if (node is null || end == pattern.Length)
            {
                return (node, false);
            }

            start = end + 1;
        }
    }
}
