using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Services.Tests.Subscriptions;

/// <summary>
/// A subscription going live after routing answered its position: what it buffered meanwhile follows in order; the
/// messages at or below the position are dropped (the protocol's reply told the client that seq), unless the
/// subscription keeps everything that reached the node after it was added (MQTT, which tells no seq).
/// </summary>
public sealed class SubscriptionGoLiveTests
{
    private sealed class Recording : IMessageSink
    {
        public List<string> Sent { get; } = [];

        public void Send(RelayMessage message) => Sent.Add($"{message.Epoch}:{message.Seq}");

        public void Lost(Subscription subscription) => Sent.Add("lost");
    }

    private static RelayMessage Message(string epoch, long seq) => new() { App = "app", Channel = "c", Epoch = epoch, Seq = seq, Data = "{}"u8.ToArray() };

    [Theory]
    [InlineData(false, new[] { "e1:7", "e1:8" })]
    [InlineData(true, new[] { "e1:5", "e1:6", "e1:7", "e1:8" })]
    public void GoLive_BufferedAtOrBelowThePosition_DroppedOrKeptFromRegistration(bool fromRegistration, string[] expected)
    {
        var sink = new Recording();
        var subscription = new Subscription(sink, "app", "c", isPattern: false);

        // Routing sequenced 5 and 6 before it answered the position (6); they reached the node after the subscription.
        subscription.Deliver(Message("e1", 5));
        subscription.Deliver(Message("e1", 6));
        subscription.Deliver(Message("e1", 7));
        subscription.GoLive("e1", 6, _ => sink.Sent.Add("ready"), fromRegistration);
        subscription.Deliver(Message("e1", 8));
        subscription.Deliver(Message("e1", 8));

        Assert.Equal(["ready", .. expected], sink.Sent);
    }

    [Theory]
    [InlineData(false, 6)]
    [InlineData(true, 4)]
    public void GoLive_TellsTheReadyStepWhereTheSubscriptionsMessagesStart(bool fromRegistration, long expected)
    {
        // What an MQTT session records as given for the channel: messages at or below it are dropped as copies.
        var sink = new Recording();
        var subscription = new Subscription(sink, "app", "c", isPattern: false);
        subscription.Deliver(Message("e1", 5));
        subscription.Deliver(Message("e1", 6));
        long? start = null;
        subscription.GoLive("e1", 6, at => start = at, fromRegistration);

        Assert.Equal(expected, start);
    }
}
