using Relay.Bus.Dapr;
using Relay.Core.Messages;

namespace Relay.Services.Tests.Dapr;

/// <summary>
/// Fan-out's memory of the seqs it passed on (<see cref="DaprFanOutDedupe"/>): every seq passes once, in any order and
/// across gaps of any size; a copy within the window is dropped; what it cannot know (older than the window, another
/// epoch, presence) passes.
/// </summary>
public sealed class DaprFanOutDedupeTests
{
    [Fact]
    public void Seqs_ShuffledAndEachSentThrice_PassOnceEach()
    {
        var dedupe = new DaprFanOutDedupe(TimeProvider.System);
        var random = new Random(7);

        // 5,000 seqs, each three times, shuffled within windows of 48: every copy lies within the window of the newest.
        var sent = Enumerable.Range(1, 5000).SelectMany(static s => new[] { s, s, s }).ToArray();
        for (var start = 0; start < sent.Length; start += 48)
        {
            random.Shuffle(sent.AsSpan(start, Math.Min(48, sent.Length - start)));
        }

        var passed = sent.Where(s => dedupe.IsFirst(Message("c", s))).ToList();
        Assert.Equal(Enumerable.Range(1, 5000), passed.Order());
        Assert.Equal(10_000, dedupe.Dropped);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(127)]
    [InlineData(128)]
    [InlineData(200)]
    [InlineData(255)]
    [InlineData(256)]
    [InlineData(1000)]
    public void Jump_OfAnySize_RemembersWhatCameBefore_AndPassesTheSeqsItSkipped(int jump)
    {
        var dedupe = new DaprFanOutDedupe(TimeProvider.System);
        for (var s = 1; s <= 10; s++)
        {
            Assert.True(dedupe.IsFirst(Message("c", s)));
        }

        Assert.True(dedupe.IsFirst(Message("c", 10 + jump)));

        // The ten before the jump are copies while they are within the window; the skipped seqs come now, once.
        for (var s = 1; s <= 10; s++)
        {
            Assert.Equal(jump + 10 - s >= DaprFanOutDedupe.Window, dedupe.IsFirst(Message("c", s)));
        }

        for (var s = 11; s < 10 + jump; s++)
        {
            Assert.True(dedupe.IsFirst(Message("c", s)), $"seq {s}, skipped by a jump of {jump}, did not pass");
            Assert.Equal(10 + jump - s >= DaprFanOutDedupe.Window, dedupe.IsFirst(Message("c", s)));
        }

        Assert.False(dedupe.IsFirst(Message("c", 10 + jump)));
    }

    [Fact]
    public void Copies_OfAnotherChannelEpochOrPresence_AreNotTakenForDuplicates()
    {
        var dedupe = new DaprFanOutDedupe(TimeProvider.System);
        Assert.True(dedupe.IsFirst(Message("a", 1)));
        Assert.True(dedupe.IsFirst(Message("b", 1)));
        Assert.True(dedupe.IsFirst(Message("a", 1, epoch: "e2")));
        Assert.False(dedupe.IsFirst(Message("a", 1, epoch: "e2")));
        Assert.True(dedupe.IsFirst(new RelayMessage { App = "app", Channel = "a", Seq = 1, Epoch = "e2", PresenceAction = "enter" }));
        Assert.True(dedupe.IsFirst(new RelayMessage { App = "app", Channel = "a", Seq = 1, Epoch = "e2", PresenceAction = "enter" }));
    }

    private static RelayMessage Message(string channel, long seq, string epoch = "e1") =>
        new() { App = "app", Channel = channel, Seq = seq, Epoch = epoch };
}
