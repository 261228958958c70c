using Microsoft.Extensions.Logging;
using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// A shared subscription's group on this node (<c>$share/{group}/{filter}</c>, per app): one subscription in the node's
/// index for all its members, each message going to one member, round robin over the members whose connection takes
/// deliveries (a persistent member that is away keeps a QoS 1/2 message only when no member is connected). Members
/// change under the broker's lock; deliveries read an immutable array, so a delivery takes no lock but the session's.
/// </summary>
internal sealed partial class MqttShareGroup(MqttBroker broker, string app, string name, string filter) : IMessageSink
{
    private MqttSubscriptionSink[] _members = [];
    private uint _next;

    public string App { get; } = app;

    public string Name { get; } = name;

    /// <summary>The topic filter after <c>$share/{group}/</c>.</summary>
    public string Filter { get; } = filter;

    /// <summary>The node's subscription, once it is started.</summary>
    public Subscription? Subscription { get; set; }

    public int Count => Volatile.Read(ref _members).Length;

    /// <summary>Adds a member (under the broker's lock).</summary>
    public void Add(MqttSubscriptionSink member) => Volatile.Write(ref _members, [.. _members, member]);

    /// <summary>Removes a member (under the broker's lock); what it was sent and did not acknowledge is offered again by its connection.</summary>
    public void Remove(MqttSubscriptionSink member) => Volatile.Write(ref _members, Array.FindAll(_members, m => !ReferenceEquals(m, member)));

    public void Send(RelayMessage message)
    {
        if (!Offer(message, null))
        {
            LogNoMember(broker.Logger, App, Name, Filter, message.Channel);
        }
    }

    /// <summary>
    /// Gives <paramref name="message"/> to one member, round robin: first to one whose connection takes it, else (QoS 1/2)
    /// to a persistent member that is away; never to <paramref name="excluding"/>'s session. False when no member took it.
    /// </summary>
    public bool Offer(RelayMessage message, MqttSession? excluding)
    {
        var members = Volatile.Read(ref _members);
        var count = members.Length;
        if (count == 0)
        {
            return false;
        }

        var start = (int)(Interlocked.Increment(ref _next) % (uint)count);
        for (var pass = 0; pass < 2; pass++)
        {
            for (var i = 0; i < count; i++)
            {
                var member = members[(start + i) % count];
                if (ReferenceEquals(member.Session, excluding))
                {
                    continue;
                }

                var retain = member.RetainAsPublished && broker.PublishedRetained(message);
                if (member.Session.DeliverShared(message, member, retain, evenAway: pass == 1))
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>Messages were lost before this node: MQTT has no word for it, and no one member owns the loss (logged).</summary>
    public void Lost(Subscription subscription) => LogLost(broker.Logger, App, Name, Filter);

    [LoggerMessage(EventId = 1460, Level = LogLevel.Debug, Message = "MQTT shared subscription $share/{Group}/{Filter} of app {App}: no member could take a message of '{Channel}' (none connected, none persistent at QoS 1/2)")]
    private static partial void LogNoMember(ILogger logger, string app, string group, string filter, string channel);

    [LoggerMessage(EventId = 1461, Level = LogLevel.Warning, Message = "MQTT shared subscription $share/{Group}/{Filter} of app {App}: messages were lost before this node and history no longer holds them; delivery goes on")]
    private static partial void LogLost(ILogger logger, string app, string group, string filter);
}
