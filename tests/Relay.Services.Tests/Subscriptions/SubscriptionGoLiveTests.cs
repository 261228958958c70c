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

    [Fact]
    public void TakeEarlier_GoesBeforeTheBuffered_InSeqOrder_EachOnce()
    {
        // Dispatched before the subscription was added (3, 4, 5), and 5 and 6 delivered to it after: 3..6, each once.
        var sink = new Recording();
        var subscription = new Subscription(sink, "app", "c", isPattern: false);
        subscription.Deliver(Message("e1", 5));
        subscription.Deliver(Message("e1", 6));
        subscription.TakeEarlier([Message("e1", 3), Message("e1", 4), Message("e1", 5)]);
        long? start = null;
        subscription.GoLive("e1", 6, at => start = at, fromRegistration: true);

        Assert.Equal(2, start);
        Assert.Equal(["e1:3", "e1:4", "e1:5", "e1:6"], sink.Sent);

        // Live already: nothing is taken.
        subscription.TakeEarlier([Message("e1", 1)]);
        Assert.Equal(4, sink.Sent.Count);
    }

    [Fact]
    public void HeldPattern_GivesTheEarlierFirst_ThenWhatItBuffered_ThenLive()
    {
        // Messages 5 and 6 reached the pattern while it was held; 3 and 4 had gone out before it was added.
        var sink = new Recording();
        var subscription = new Subscription(sink, "app", "#", isPattern: true, heldUntilLive: true);
        subscription.Deliver(Message("e1", 5));
        subscription.Deliver(Message("e1", 6));
        Assert.Empty(sink.Sent);
        subscription.GoLive([Message("e1", 3), Message("e1", 4)]);
        subscription.Deliver(Message("e1", 7));

        Assert.Equal(["e1:3", "e1:4", "e1:5", "e1:6", "e1:7"], sink.Sent);

        // A pattern not held is live from the start.
        var live = new Recording();
        new Subscription(live, "app", "#", isPattern: true).Deliver(Message("e1", 1));
        Assert.Equal(["e1:1"], live.Sent);
    }

    [Fact]
    public void RecentDispatches_After_TheChannelsMessagesDispatchedLater_OldestFirst_WithinCapacity()
    {
        var recent = new RecentDispatches();
        recent.Add(Message("e1", 1));
        var before = DateTime.UtcNow.Ticks;
        Thread.Sleep(2);
        recent.Add(Message("e1", 2));
        recent.Add(new RelayMessage { App = "other-app", Channel = "c", Epoch = "e1", Seq = 9, Data = "{}"u8.ToArray() });
        recent.Add(new RelayMessage { App = "app", Channel = "d", Epoch = "e1", Seq = 9, Data = "{}"u8.ToArray() });
        recent.Add(new RelayMessage { App = "app", Channel = "c", Epoch = "e1", Seq = 0, PresenceAction = "enter", Data = "{}"u8.ToArray() });
        recent.Add(Message("e1", 3));

        Assert.Equal([2L, 3L], recent.After("app", "c", isPattern: false, before)!.Select(m => m.Seq));
        Assert.Null(recent.After("app", "c", isPattern: false, DateTime.UtcNow.Ticks));
        Assert.Null(recent.After("app", "nobody", isPattern: false, before));

        // A pattern: the channels it matches (c, d), in the order they went out.
        Assert.Equal(["c:2", "d:9", "c:3"], recent.After("app", "+", isPattern: true, before)!.Select(m => $"{m.Channel}:{m.Seq}"));

        // Only the last Capacity messages are kept.
        for (var seq = 4; seq < 4 + RecentDispatches.Capacity; seq++)
        {
            recent.Add(Message("e1", seq));
        }

        var kept = recent.After("app", "c", isPattern: false, before)!;
        Assert.Equal(RecentDispatches.Capacity, kept.Count);
        Assert.Equal(4, kept[0].Seq);

        // And at most MaxBytes of payload: 1 MiB messages, four kept (a fifth would pass the bound).
        var large = new byte[1024 * 1024];
        for (var seq = 1000; seq < 1010; seq++)
        {
            recent.Add(new RelayMessage { App = "app", Channel = "big", Epoch = "e1", Seq = seq, Data = large });
        }

        Assert.Equal([1006L, 1007, 1008, 1009], recent.After("app", "big", isPattern: false, before)!.Select(m => m.Seq));
        Assert.Null(recent.After("app", "c", isPattern: false, before));
    }
}
