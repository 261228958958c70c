using System.Collections.Concurrent;
using Relay.Core.Channels;
using Relay.Core.Messages;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// The node's retained messages, per app: a topic's last retained PUBLISH (MQTT 3.1.1 §3.3.1.3, 5.0 §3.3.1.3), sent to
/// each new subscription whose filter matches it. Kept in this node's memory only (docs/mqtt.md): another node over the
/// same bus has its own, and a restart forgets them.
/// </summary>
internal sealed class MqttRetained(int maxPerApp)
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, RelayMessage>> _apps = new(StringComparer.Ordinal);

    /// <summary>
    /// Keeps <paramref name="message"/> as its topic's retained message, or clears the topic's when its payload is empty.
    /// False when the app already holds its maximum of topics and this one is new (nothing is kept then).
    /// </summary>
    public bool Set(RelayMessage message)
    {
        var topics = _apps.GetOrAdd(message.App, static _ => new ConcurrentDictionary<string, RelayMessage>(StringComparer.Ordinal));
        if (message.Data.IsEmpty)
        {
            topics.TryRemove(message.Channel, out _);
            return true;
        }

        lock (topics)
        {
            // Under the app's lock so two new topics at once cannot both take the last place.
            if (!topics.ContainsKey(message.Channel) && topics.Count >= maxPerApp)
            {
                return false;
            }

            topics[message.Channel] = message;
            return true;
        }
    }

    /// <summary>Whether a retained publish to <paramref name="topic"/> would be kept (a topic already retained always is).</summary>
    public bool HasRoomFor(string app, string topic) =>
        !_apps.TryGetValue(app, out var topics) || topics.Count < maxPerApp || topics.ContainsKey(topic);

    /// <summary>The retained messages of <paramref name="app"/> whose topics <paramref name="filter"/> matches.</summary>
    public List<RelayMessage> Matching(string app, string filter)
    {
        var found = new List<RelayMessage>();
        if (!_apps.TryGetValue(app, out var topics) || topics.IsEmpty)
        {
            return found;
        }

        if (!ChannelName.IsPattern(filter))
        {
            if (topics.TryGetValue(filter, out var one))
            {
                found.Add(one);
            }

            return found;
        }

        // The node's own matcher, so a filter matches here exactly what it matches live.
        var index = new PatternIndex<string>();
        index.Add(filter, filter);
        var matched = new List<string>(1);
        foreach (var (topic, message) in topics)
        {
            index.Match(topic, matched);
            if (matched.Count > 0)
            {
                found.Add(message);
                matched.Clear();
            }
        }

        return found;
    }
}
