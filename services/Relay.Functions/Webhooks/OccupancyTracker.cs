using Relay.Bus.FanOut;
using Relay.Core.Channels;

namespace Relay.Functions.Webhooks;

/// <summary>
/// Which channels have subscribers on some node, from the interest changes fan-out receives: a channel is occupied when
/// its first node reports subscribers and vacated when its last one reports none or goes away. Patterns are not channels
/// and are left out.
/// </summary>
internal sealed class OccupancyTracker(WebhookDispatcher webhooks, TimeProvider time)
{
    private readonly Dictionary<(string App, string Channel), HashSet<string>> _nodes = [];

    public void Apply(InterestChange change)
    {
        if (ChannelName.IsPattern(change.ChannelOrPattern))
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
        }

        if (occupied is { } now)
        {
            webhooks.OnOccupancy(key.App, key.ChannelOrPattern, now, time.GetUtcNow().ToUnixTimeMilliseconds());
        }
    }

    public void RemoveNode(string nodeId)
    {
        List<(string App, string Channel)>? vacated = null;
        lock (_nodes)
        {
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
            }
        }

        var timestamp = time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var (app, channel) in vacated ?? [])
        {
            webhooks.OnOccupancy(app, channel, occupied: false, timestamp);
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
