using Relay.Core.Channels;

namespace Relay.Bus.Retained;

/// <summary>
/// A subscription's filter matched against retained topics with the node's one matcher (<see cref="PatternIndex{T}"/>),
/// so a filter matches a retained topic exactly when it would match a live message on it.
/// </summary>
public sealed class RetainedFilter
{
    private readonly PatternIndex<string> _index = new();
    private readonly List<string> _matched = new(1);
    private readonly string _filter;

    private RetainedFilter(string filter)
    {
        _filter = filter;
        _index.Add(filter, filter);
    }

    /// <summary>A matcher for <paramref name="filter"/> (a channel name or pattern).</summary>
    public static RetainedFilter For(string filter) => new(filter);

    /// <summary>
    /// The filter's levels before its first wildcard, without the last separator: every topic it matches starts with
    /// them (<c>a/#</c> matches <c>a</c> too).
    /// </summary>
    public string LiteralPrefix
    {
        get
        {
            var wildcard = _filter.AsSpan().IndexOfAny('+', '#');
            return wildcard < 0 ? _filter : _filter[..wildcard].TrimEnd('/');
        }
    }

    /// <summary>Whether <paramref name="topic"/> matches the filter.</summary>
    public bool Matches(string topic)
    {
        _matched.Clear();
        _index.Match(topic, _matched);
        return _matched.Count > 0;
    }
}
