using Relay.Core.Channels;

namespace Relay.Bus.FanOut;

/// <summary>
/// Which channels have subscribers on some node, from the interest changes a fan-out process applies: a channel is
/// occupied when its first node reports subscribers and vacated when its last one reports none or goes away. Patterns
/// are not channels and are left out, and so is whatever <c>follows</c> declines. <c>changed</c> (app, channel,
/// occupied) is called under the tracker's lock, so one channel's occupied and vacated reach it in the order they
/// happened. Used by the functions' occupancy webhooks and by Pusher's.
/// </summary>
public sealed class ChannelOccupancy(Func<string, string, bool> follows, Action<string, string, bool> changed)
{
    private readonly Dictionary<(string App, string Channel), HashSet<string>> _nodes = [];

    /// <summary>Applies one node's change of interest in a channel.</summary>
    public void Apply(InterestChange change)
    {
        ArgumentNullException.ThrowIfNull(change);
        if (ChannelName.IsPattern(change.ChannelOrPattern) || !follows(change.App, change.ChannelOrPattern))
        {
            return;
        }

        var key = (change.App, change.ChannelOrPattern);
        lock (_nodes)
        {
            if (change.Subscribers > 0)
            {
                if (!_nodes.TryGetValue(key, out var nodes))
                {
                    _nodes[key] = nodes = new HashSet<string>(StringComparer.Ordinal);
                }

                if (nodes.Add(change.NodeId) && nodes.Count == 1)
                {
                    changed(key.App, key.ChannelOrPattern, true);
                }
            }
            else if (_nodes.TryGetValue(key, out var nodes) && nodes.Remove(change.NodeId) && nodes.Count == 0)
            {
                _nodes.Remove(key);
                changed(key.App, key.ChannelOrPattern, false);
            }
        }
    }

    /// <summary>A node went away: the channels only it had subscribers on are vacated.</summary>
    public void RemoveNode(string nodeId)
    {
        lock (_nodes)
        {
            List<(string App, string Channel)>? vacated = null;
            foreach (var (key, nodes) in _nodes)
            {
                if (nodes.Remove(nodeId) && nodes.Count == 0)
                {
                    (vacated ??= []).Add(key);
                }
            }

            foreach (var key in vacated ?? [])
            {
                _nodes.Remove(key);
                changed(key.App, key.Channel, false);
            }
        }
    }

    /// <summary>Another fan-out process took these channels over: forgotten without an event (the new owner reports them).</summary>
    public void Forget(Func<string, string, bool> leaving)
    {
        ArgumentNullException.ThrowIfNull(leaving);
        lock (_nodes)
        {
            var gone = new List<(string, string)>();
            foreach (var key in _nodes.Keys)
            {
                if (leaving(key.App, key.Channel))
                {
                    gone.Add(key);
                }
            }

            foreach (var key in gone)
            {
                _nodes.Remove(key);
            }
        }
    }
}
