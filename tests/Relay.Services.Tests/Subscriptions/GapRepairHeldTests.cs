using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Services.Tests.Subscriptions;

/// <summary>
/// A node's gap repair when a second delivery goes missing while the first gap is read back (deliveries arrive late or
/// out of order while a Redis Cluster slot moves: ReshardRedisClusterTests). The history holds both gaps, so both are
/// read back and nothing is reported lost. The history here is a list the test answers reads from, so the second gap
/// can be made to arrive exactly while the first read is out; over a real server that timing cannot be chosen.
/// </summary>
public sealed class GapRepairHeldTests
{
    private const string Epoch = "e1";

    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(10);

    private static RelayMessage Message(long seq) => new() { App = "app", Channel = "ch", Epoch = Epoch, Seq = seq };

    [Fact]
    public async Task ASecondGapAmongTheHeldMessages_IsReadBackToo_NotReportedLost()
    {
        var history = Enumerable.Range(1, 10).Select(static s => Message(s)).ToList();
        var firstRead = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reads = new List<(long After, int Limit)>();
        var dispatched = new List<long>();
        var lost = new List<long>();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        async Task<(string Epoch, IReadOnlyList<RelayMessage> Messages)?> ReadAfterAsync(string app, string channel, bool presence, long after, int limit)
        {
            int count;
            lock (reads)
            {
                reads.Add((after, limit));
                count = reads.Count;
            }

            if (count == 1)
            {
                await firstRead.Task.WaitAsync(s_wait);
            }

            return (Epoch, history.Where(m => m.Seq > after).Take(limit).ToList());
        }

        var repair = new GapRepair(
            message =>
            {
                lock (dispatched)
                {
                    dispatched.Add(message.Seq);
                }

                if (message.Seq == 6)
                {
                    done.TrySetResult();
                }
            },
            ReadAfterAsync,
            (_, _, _, upTo, _) =>
            {
                lock (lost)
                {
                    lost.Add(upTo);
                }
            });

        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));

        // 2 never comes: 3 opens a repair of the gap, and while it reads, 4 and 5 never come either.
        repair.Deliver(Message(3));
        repair.Deliver(Message(6));
        firstRead.SetResult();
        await done.Task.WaitAsync(s_wait);

        Assert.Equal([2, 3, 4, 5, 6], dispatched);
        Assert.Empty(lost);
        Assert.Equal([(1L, 1), (3L, 2)], reads);
        Assert.Equal(3, repair.Repaired);
        Assert.Equal(0, repair.Unrepaired);
    }

    [Fact]
    public async Task AGapTheHistoryNoLongerHolds_AmongTheHeldMessages_IsReportedLost_Once_AndTheRestGoOutInOrder()
    {
        // History lost 4 and 5 (trimmed): the second read finds only what follows.
        var history = new[] { 1, 2, 3, 6, 7 }.Select(static s => Message(s)).ToList();
        var firstRead = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reads = 0;
        var dispatched = new List<long>();
        var lost = new List<long>();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        async Task<(string Epoch, IReadOnlyList<RelayMessage> Messages)?> ReadAfterAsync(string app, string channel, bool presence, long after, int limit)
        {
            if (Interlocked.Increment(ref reads) == 1)
            {
                await firstRead.Task.WaitAsync(s_wait);
            }

            return (Epoch, history.Where(m => m.Seq > after).Take(limit).ToList());
        }

        var repair = new GapRepair(
            message =>
            {
                dispatched.Add(message.Seq);
                if (message.Seq == 7)
                {
                    done.TrySetResult();
                }
            },
            ReadAfterAsync,
            (_, _, _, upTo, _) => lost.Add(upTo));

        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));
        repair.Deliver(Message(3));
        repair.Deliver(Message(6));
        repair.Deliver(Message(7));
        firstRead.SetResult();
        await done.Task.WaitAsync(s_wait);

        Assert.Equal([2, 3, 6, 7], dispatched);
        Assert.Equal([5L], lost);
        Assert.Equal(2, Volatile.Read(ref reads));
        Assert.Equal(2, repair.Unrepaired);
    }

    [Fact]
    public async Task AResyncWhileARepairReads_IsCaughtUpTo_WhenTheRepairIsDone()
    {
        // 2 is lost and 3 shows it; 4 and 5 are lost too, with nothing after them: only the resync knows of them.
        var history = Enumerable.Range(1, 5).Select(static s => Message(s)).ToList();
        var firstRead = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reads = 0;
        var dispatched = new List<long>();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        async Task<(string Epoch, IReadOnlyList<RelayMessage> Messages)?> ReadAfterAsync(string app, string channel, bool presence, long after, int limit)
        {
            if (Interlocked.Increment(ref reads) == 1)
            {
                await firstRead.Task.WaitAsync(s_wait);
            }

            return (Epoch, history.Where(m => m.Seq > after).Take(limit).ToList());
        }

        var repair = new GapRepair(
            message =>
            {
                lock (dispatched)
                {
                    dispatched.Add(message.Seq);
                }

                if (message.Seq == 5)
                {
                    done.TrySetResult();
                }
            },
            ReadAfterAsync,
            (_, _, _, _, _) => { });

        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));
        repair.Deliver(Message(3));
        await repair.ResyncAsync((_, _) => Task.FromResult<ChannelPosition?>(new ChannelPosition(Epoch, 5)));
        firstRead.SetResult();
        await done.Task.WaitAsync(s_wait);

        Assert.Equal([2, 3, 4, 5], dispatched);
        Assert.Equal(0, repair.Unrepaired);
    }

    [Fact]
    public async Task AReadThatFails_IsTriedAgain_BeforeAnythingCountsLost()
    {
        var history = Enumerable.Range(1, 4).Select(static s => Message(s)).ToList();
        var reads = 0;
        var dispatched = new List<long>();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        // Routing between owners: the first two reads fail (one throws, one answers with no history).
        Task<(string Epoch, IReadOnlyList<RelayMessage> Messages)?> ReadAfterAsync(string app, string channel, bool presence, long after, int limit) =>
            Interlocked.Increment(ref reads) switch
            {
                1 => throw new TimeoutException("routing did not answer"),
                2 => Task.FromResult<(string, IReadOnlyList<RelayMessage>)?>(null),
                _ => Task.FromResult<(string, IReadOnlyList<RelayMessage>)?>((Epoch, history.Where(m => m.Seq > after).Take(limit).ToList())),
            };

        var repair = new GapRepair(
            message =>
            {
                lock (dispatched)
                {
                    dispatched.Add(message.Seq);
                }

                if (message.Seq == 4)
                {
                    done.TrySetResult();
                }
            },
            ReadAfterAsync,
            (_, _, _, _, _) => { });

        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));
        repair.Deliver(Message(4));
        await done.Task.WaitAsync(s_wait);

        Assert.Equal([2, 3, 4], dispatched);
        Assert.Equal(3, Volatile.Read(ref reads));
        Assert.Equal(0, repair.Unrepaired);
    }

    [Fact]
    public async Task ATailNoReadReaches_IsReportedLost_SoSubscribersRecoverIt()
    {
        var reads = 0;
        var lost = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        Task<(string Epoch, IReadOnlyList<RelayMessage> Messages)?> ReadAfterAsync(string app, string channel, bool presence, long after, int limit)
        {
            Interlocked.Increment(ref reads);
            throw new TimeoutException("routing did not answer");
        }

        var repair = new GapRepair(_ => { }, ReadAfterAsync, (_, _, _, upTo, _) => lost.TrySetResult(upTo));
        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));

        // The position says 3 was published; 2 and 3 never came and cannot be read.
        await repair.ResyncAsync((_, _) => Task.FromResult<ChannelPosition?>(new ChannelPosition(Epoch, 3)));

        Assert.Equal(3, await lost.Task.WaitAsync(s_wait));
        Assert.Equal(4, Volatile.Read(ref reads));
        Assert.Equal(2, repair.Unrepaired);
    }
}
