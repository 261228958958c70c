using System.Text.Json;
using Relay.Client;

namespace Relay.Services.Tests.Client;

public sealed class RelaySubscriptionTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Deliver_SeqAlreadyDeliveredInSameEpoch_IsDroppedAsDuplicate()
    {
        var subscription = NewSubscription("chat:dups");
        subscription.OnSubscribed(Ok("""{"type":"ok","channel":"chat:dups","epoch":"e1","seq":0}"""));

        foreach (var seq in new long[] { 1, 2, 2, 1, 3, 3 })
        {
            subscription.Deliver(Message("chat:dups", "e1", seq));
        }

        subscription.Complete();
        Assert.Equal([1L, 2, 3], await SeqsAsync(subscription));
        Assert.Equal(3, subscription.LastSeq);
    }

    [Fact]
    public async Task Deliver_NewEpoch_StartsOverAndIsDelivered()
    {
        var subscription = NewSubscription("chat:epochs");
        subscription.OnSubscribed(Ok("""{"type":"ok","channel":"chat:epochs","epoch":"e1","seq":5}"""));

        subscription.Deliver(Message("chat:epochs", "e1", 6));
        subscription.Deliver(Message("chat:epochs", "e2", 1));
        subscription.Complete();

        Assert.Equal([6L, 1], await SeqsAsync(subscription));
        Assert.Equal("e2", subscription.Epoch);
        Assert.Equal(1, subscription.LastSeq);
    }

    [Fact]
    public void ResumePosition_BeforeAnyMessage_IsTheSubscribeReplysPosition()
    {
        var subscription = NewSubscription("chat:resume");
        subscription.OnSubscribed(Ok("""{"type":"ok","channel":"chat:resume","epoch":"e7","seq":41}"""));

        Assert.Equal(("e7", 41L), subscription.ResumePosition());
    }

    [Fact]
    public void ResumePosition_ForPattern_IsNull()
    {
        var subscription = NewSubscription("chat/+");
        subscription.OnSubscribed(Ok("""{"type":"ok","channel":"chat/+"}"""));

        Assert.Null(subscription.ResumePosition());
    }

    [Fact]
    public void OnResubscribed_NotRecoveredWithNewEpoch_ResumesFromServersPositionAndRaisesResumed()
    {
        var subscription = NewSubscription("chat:lost");
        subscription.OnSubscribed(Ok("""{"type":"ok","channel":"chat:lost","epoch":"e1","seq":3}"""));
        RelaySubscriptionResumedEventArgs? resumed = null;
        subscription.Resumed += (_, e) => resumed = e;

        subscription.OnResubscribed(Ok("""{"type":"ok","channel":"chat:lost","epoch":"e2","seq":9,"recovered":false}"""));

        Assert.NotNull(resumed);
        Assert.False(resumed.Recovered);
        Assert.False(subscription.Recovered);
        Assert.Equal(("e2", 9L), subscription.ResumePosition());
    }

    [Fact]
    public async Task ReadAllAsync_BufferFull_DropsOldestAndCountsIt()
    {
        var subscription = new RelaySubscription(null!, "chat:full", handler: null, capacity: 2);
        subscription.OnSubscribed(Ok("""{"type":"ok","channel":"chat:full","epoch":"e1","seq":0}"""));

        for (var seq = 1; seq <= 5; seq++)
        {
            subscription.Deliver(Message("chat:full", "e1", seq));
        }

        subscription.Complete();
        Assert.Equal([4L, 5], await SeqsAsync(subscription));
        Assert.Equal(3, subscription.DroppedMessages);
    }

    private static RelaySubscription NewSubscription(string channel) => new(null!, channel, handler: null, capacity: 100);

    private static JsonElement Ok(string json) => JsonDocument.Parse(json).RootElement.Clone();

    private static RelayMessage Message(string channel, string epoch, long seq) =>
        new() { Channel = channel, Epoch = epoch, Seq = seq, Data = Ok(seq.ToString(System.Globalization.CultureInfo.InvariantCulture)) };

    private static async Task<List<long>> SeqsAsync(RelaySubscription subscription)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        var seqs = new List<long>();
        await foreach (var message in subscription.ReadAllAsync(timeout.Token).ConfigureAwait(false))
        {
            seqs.Add(message.Seq);
        }

        return seqs;
    }
}
