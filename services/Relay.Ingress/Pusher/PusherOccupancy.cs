using Relay.Bus.FanOut;
using Relay.Core.Channels;

namespace Relay.Ingress.Pusher;

/// <summary>
/// Which channels have subscribers on some node, from the interest changes this process's fan-out applies: a channel is
/// occupied when its first node reports subscribers and vacated when its last one reports none or goes away. Only apps
/// with an occupancy webhook are followed; patterns and users' own channels are no Pusher channels and are left out.
/// </summary>
internal sealed class PusherOccupancy(Func<string, bool> follows, Action<string, string, bool> changed)
{
    private readonly Dictionary<(string App, string Channel), HashSet<string>> _nodes = [];

    public void Apply(InterestChange change)
    {
        if (!follows(change.App) || ChannelName.IsPattern(change.ChannelOrPattern) || change.ChannelOrPattern.StartsWith(PusherChannels.RelayUserPrefix, StringComparison.Ordinal))
        {
            return;
        }

        var key = (change.App, change.ChannelOrPattern);
        bool? occupied = null;
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
                    occupied = true;
                }
            }
            else if (_nodes.TryGetValue(key, out var nodes) && nodes.Remove(change.NodeId) && nodes.Count == 0)
            {
                _nodes.Remove(key);
                occupied = false;
            }

            // Told under the lock, so one channel's occupied and vacated reach the receiver's queue in the order they happened.
            if (occupied is { } now)
            {
                changed(key.App, key.ChannelOrPattern, now);
            }
        }
    }

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
