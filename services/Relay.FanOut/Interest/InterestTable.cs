using System.Collections.Concurrent;
using Relay.Bus.FanOut;
using Relay.Core.Channels;

namespace Relay.FanOut.Interest;

/// <summary>
/// Which ingress nodes hold subscribers of which channels and patterns. Delivery reads immutable node arrays,
/// so a message to a channel costs one dictionary lookup plus one pattern match per app, and no allocation.
/// </summary>
public sealed class InterestTable
{
    private readonly ConcurrentDictionary<(string App, string Channel), NodeCounts> _exact = new();
    private readonly ConcurrentDictionary<string, PatternIndex<string>> _patterns = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string App, string Pattern), NodeCounts> _patternCounts = new();
    private readonly ConcurrentDictionary<string, string> _nodeIds = new(StringComparer.Ordinal);

    // One array per node for the channels only it holds (most of them), shared rather than one per channel.
    private readonly ConcurrentDictionary<string, string[]> _singleNodes = new(StringComparer.Ordinal);
    private readonly Lock _writeGate = new();

    [ThreadStatic]
    private static List<string>? t_matches;

    /// <summary>Applies an interest change.</summary>
    public void Apply(InterestChange change)
    {
        ArgumentNullException.ThrowIfNull(change);

        // One node id instance per node, so pattern entries compare by reference.
        var node = _nodeIds.GetOrAdd(change.NodeId, static id => id);
        lock (_writeGate)
        {
            if (ChannelName.IsPattern(change.ChannelOrPattern))
            {
                var key = (change.App, change.ChannelOrPattern);
                var counts = _patternCounts.GetOrAdd(key, static _ => new NodeCounts());
                var (added, removed) = counts.Set(node, change.Subscribers, this);
                var index = _patterns.GetOrAdd(change.App, static _ => new PatternIndex<string>());
                if (added)
                {
                    index.Add(change.ChannelOrPattern, node);
                }
                else if (removed)
                {
                    index.Remove(change.ChannelOrPattern, node);
                }

                if (counts.IsEmpty)
                {
                    _patternCounts.TryRemove(key, out _);
                }
            }
            else
            {
                var key = (change.App, change.ChannelOrPattern);
                var counts = _exact.GetOrAdd(key, static _ => new NodeCounts());
                counts.Set(node, change.Subscribers, this);
                if (counts.IsEmpty)
                {
                    _exact.TryRemove(key, out _);
                }
            }
        }
    }

    /// <summary>Forgets everything a node registered (it died or left).</summary>
    public void RemoveNode(string nodeId)
    {
        lock (_writeGate)
        {
            foreach (var (key, counts) in _exact)
            {
                counts.Set(nodeId, 0, this);
                if (counts.IsEmpty)
                {
                    _exact.TryRemove(key, out _);
                }
            }

            foreach (var (key, counts) in _patternCounts)
            {
                if (counts.Set(nodeId, 0, this).Removed && _patterns.TryGetValue(key.App, out var index) && _nodeIds.TryGetValue(nodeId, out var node))
                {
                    index.Remove(key.Pattern, node);
                }

                if (counts.IsEmpty)
                {
                    _patternCounts.TryRemove(key, out _);
                }
            }

            _singleNodes.TryRemove(nodeId, out _);
        }
    }

    /// <summary>Forgets every node's interest in the channels (not patterns) <paramref name="match"/> accepts (app, channel).</summary>
    public void RemoveChannels(Func<string, string, bool> match)
    {
        ArgumentNullException.ThrowIfNull(match);
        lock (_writeGate)
        {
            foreach (var (key, _) in _exact)
            {
                if (match(key.App, key.Channel))
                {
                    _exact.TryRemove(key, out _);
                }
            }
        }
    }

    /// <summary>Calls <paramref name="deliver"/> once for each node interested in <paramref name="channel"/>.</summary>
    public void ForEachNode<TState>(string app, string channel, TState state, Action<string, TState> deliver)
    {
        ArgumentNullException.ThrowIfNull(deliver);
        var exactNodes = _exact.TryGetValue((app, channel), out var counts) ? counts.Nodes : [];
        foreach (var node in exactNodes)
        {
            deliver(node, state);
        }

        if (!_patterns.TryGetValue(app, out var index) || index.Count == 0)
        {
            return;
        }

        var matches = t_matches ??= [];
        matches.Clear();
        index.Match(channel, matches);
        for (var i = 0; i < matches.Count; i++)
        {
            var node = matches[i];
            if (Array.IndexOf(exactNodes, node) < 0 && matches.IndexOf(node, 0, i) < 0)
            {
                deliver(node, state);
            }
        }

        matches.Clear();
    }

    /// <summary>The channels of an app with subscribers (exact subscriptions), with the total across nodes.</summary>
    public IReadOnlyList<ChannelCount> Channels(string app, string? prefix)
    {
        var result = new List<ChannelCount>();
        foreach (var ((channelApp, channel), counts) in _exact)
        {
            if (channelApp == app && (prefix is null || channel.StartsWith(prefix, StringComparison.Ordinal)))
            {
                var total = counts.Total;
                if (total > 0)
                {
                    result.Add(new ChannelCount(channel, total));
                }
            }
        }

        result.Sort(static (a, b) => string.CompareOrdinal(a.Channel, b.Channel));
        return result;
    }

    /// <summary>The one-node array of <paramref name="node"/>, shared by every channel only that node holds.</summary>
    private string[] SingleNode(string node) => _singleNodes.GetOrAdd(node, static id => [id]);

    /// <summary>
    /// Subscriber counts per node for one channel or pattern. A channel is usually held by one node: then
    /// <see cref="Nodes"/> is the table's shared array of that node and its count a field, so such a channel costs this
    /// object (32 B) and its dictionary entry; with more nodes, the others' counts are a small array beside. A change
    /// sets a new (or shared) array, never writes one that readers may hold, so readers need no lock.
    /// </summary>
    private sealed class NodeCounts
    {
        // Nodes[0]'s subscribers, and those of Nodes[1..] in order.
        private int _first;
        private int[] _rest = [];

        /// <summary>The nodes with subscribers; never written once set, so readers need no lock.</summary>
        public string[] Nodes { get; private set; } = [];

        public bool IsEmpty => Nodes.Length == 0;

        public int Total
        {
            get
            {
                lock (this)
                {
                    if (Nodes.Length == 0)
                    {
                        return 0;
                    }

                    var total = _first;
                    foreach (var count in _rest)
                    {
                        total += count;
                    }

                    return total;
                }
            }
        }

        public (bool Added, bool Removed) Set(string node, int subscribers, InterestTable table)
        {
            lock (this)
            {
                var at = Array.IndexOf(Nodes, node);
                if (at >= 0 && subscribers > 0)
                {
                    if (at == 0)
                    {
                        _first = subscribers;
                    }
                    else
                    {
                        _rest[at - 1] = subscribers;
                    }

                    return (false, false);
                }

                if (at >= 0)
                {
                    int[] counts = [_first, .. _rest];
                    counts = [.. counts[..at], .. counts[(at + 1)..]];
                    string[] nodes = [.. Nodes[..at], .. Nodes[(at + 1)..]];
                    _first = counts.Length > 0 ? counts[0] : 0;
                    _rest = counts.Length > 1 ? counts[1..] : [];
                    Nodes = nodes.Length == 1 ? table.SingleNode(nodes[0]) : nodes;
                    return (false, true);
                }

                if (subscribers > 0)
                {
                    if (Nodes.Length == 0)
                    {
                        _first = subscribers;
                        Nodes = table.SingleNode(node);
                    }
                    else
                    {
                        _rest = [.. _rest, subscribers];
                        Nodes = [.. Nodes, node];
                    }

                    return (true, false);
                }

                return (false, false);
            }
        }
    }
}
