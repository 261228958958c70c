using System.Collections.Concurrent;
using Relay.Core.Channels;
using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>
/// The node's subscription index: exact channels map to a <see cref="SubscriberList"/> each, patterns
/// live in one <see cref="PatternIndex{T}"/> per app. Dispatch reads without locks and allocates nothing.
/// </summary>
internal sealed class LocalSubscriptions
{
    private readonly ConcurrentDictionary<(string App, string Channel), SubscriberList> _exact = new();
    private readonly ConcurrentDictionary<string, PatternIndex<Subscription>> _patterns = new(StringComparer.Ordinal);
    private readonly Dictionary<(string App, string Pattern), int> _patternCounts = [];
    private readonly Lock _writeGate = new();

    [ThreadStatic]
    private static List<Subscription>? t_matches;

    /// <summary>Adds a subscription; returns how many local subscribers its channel or pattern now has.</summary>
    public int Add(Subscription subscription)
    {
        lock (_writeGate)
        {
            if (subscription.IsPattern)
            {
                _patterns.GetOrAdd(subscription.App, static _ => new PatternIndex<Subscription>()).Add(subscription.Channel, subscription);
                var key = (subscription.App, subscription.Channel);
                var count = _patternCounts.GetValueOrDefault(key) + 1;
                _patternCounts[key] = count;
                return count;
            }

            var list = _exact.GetOrAdd((subscription.App, subscription.Channel), static _ => new SubscriberList());
            list.Add(subscription);
            return list.Count;
        }
    }

    /// <summary>Removes a subscription; returns how many local subscribers its channel or pattern still has.</summary>
    public int Remove(Subscription subscription)
    {
        lock (_writeGate)
        {
            if (subscription.IsPattern)
            {
                var key = (subscription.App, subscription.Channel);
                if (!_patterns.TryGetValue(subscription.App, out var index) || !index.Remove(subscription.Channel, subscription))
                {
                    return _patternCounts.GetValueOrDefault(key);
                }

                var count = _patternCounts.GetValueOrDefault(key) - 1;
                if (count <= 0)
                {
                    _patternCounts.Remove(key);
                }
                else
                {
                    _patternCounts[key] = count;
                }

                return Math.Max(count, 0);
            }

            var channelKey = (subscription.App, subscription.Channel);
            if (!_exact.TryGetValue(channelKey, out var list) || !list.Remove(subscription))
            {
                return list?.Count ?? 0;
            }

            if (list.Count == 0)
            {
                _exact.TryRemove(channelKey, out _);
            }

            return list.Count;
        }
    }

    /// <summary>How many local subscribers a channel has (exact subscriptions).</summary>
    public int CountOf(string app, string channel) => _exact.TryGetValue((app, channel), out var list) ? list.Count : 0;

    /// <summary>Delivers a message to every local subscription of its channel and of matching patterns; returns how many.</summary>
    // Presence events go to subscribers of the channel itself, not to wildcard watchers.
    public int Dispatch(RelayMessage message) =>
        Visit(message.App, message.Channel, patterns: message.PresenceAction is null, new Deliver(message));

    /// <summary>Calls <paramref name="action"/> for every local subscription of a channel and of the patterns matching it.</summary>
    public int ForEach(string app, string channel, Action<Subscription> action) =>
        Visit(app, channel, patterns: true, new Call(action));

    // One walk for delivery (the hot path: a struct visitor, so nothing is allocated) and for the rare whole-channel calls.
    private int Visit<TVisitor>(string app, string channel, bool patterns, TVisitor visitor)
        where TVisitor : struct, IVisitor
    {
        var count = 0;
        if (_exact.TryGetValue((app, channel), out var list))
        {
            var snapshot = list.Current;
            var items = snapshot.Items;
            for (var i = 0; i < snapshot.Length; i++)
            {
                if (Volatile.Read(ref items[i]) is { } subscription)
                {
                    visitor.Visit(subscription);
                    count++;
                }
            }
        }

        if (patterns && _patterns.TryGetValue(app, out var index) && index.Count > 0)
        {
            var matches = t_matches ??= [];
            index.Match(channel, matches);
            count += matches.Count;
            foreach (var subscription in matches)
            {
                visitor.Visit(subscription);
            }

            matches.Clear();
        }

        return count;
    }

    private interface IVisitor
    {
        void Visit(Subscription subscription);
    }

    private readonly struct Deliver(RelayMessage message) : IVisitor
    {
        public void Visit(Subscription subscription) => subscription.Deliver(message);
    }

    private readonly struct Call(Action<Subscription> action) : IVisitor
    {
        public void Visit(Subscription subscription) => action(subscription);
    }
}
