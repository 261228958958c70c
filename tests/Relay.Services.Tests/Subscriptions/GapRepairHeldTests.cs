using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Services.Tests.Subscriptions;

/// <summary>
/// A node's gap repair when deliveries go missing while a gap is read back (deliveries arrive late or out of order while
/// a Redis Cluster slot moves: ReshardRedisClusterTests; a resync comes during a shard handover), and when reads fail.
/// The history here is a list the test answers reads from, its first read held until the test lets it go, so a second
/// gap or a resync can be made to arrive exactly while the first read is out; over a real server that timing cannot be chosen.
/// </summary>
public sealed class GapRepairHeldTests
{
    private const string Epoch = "e1";

    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(10);

    private static RelayMessage Message(long seq) => new() { App = "app", Channel = "ch", Epoch = Epoch, Seq = seq };

    [Fact]
    public async Task ASecondGapAmongTheHeldMessages_IsReadBackToo_NotReportedLost()
    {
        var history = new History(Enumerable.Range(1, 10));
        var dispatched = new Dispatched(last: 6);
        var repair = new GapRepair(dispatched.Add, history.ReadAfterAsync, dispatched.Lost);
        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));

        // 2 never comes: 3 opens a repair of the gap, and while it reads, 4 and 5 never come either.
        repair.Deliver(Message(3));
        repair.Deliver(Message(6));
        history.ReleaseFirstRead();

        Assert.Equal([2, 3, 4, 5, 6], await dispatched.WaitAsync());
        Assert.Empty(dispatched.LostUpTo);
        Assert.Equal([(1L, 1), (3L, 2)], history.Reads);
        Assert.Equal(3, repair.Repaired);
        Assert.Equal(0, repair.Unrepaired);
    }

    [Fact]
    public async Task AGapTheHistoryNoLongerHolds_AmongTheHeldMessages_IsReportedLost_Once_AndTheRestGoOutInOrder()
    {
        // History lost 4 and 5 (trimmed): the second read finds only what follows.
        var history = new History([1, 2, 3, 6, 7]);
        var dispatched = new Dispatched(last: 7);
        var repair = new GapRepair(dispatched.Add, history.ReadAfterAsync, dispatched.Lost);
        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));
        repair.Deliver(Message(3));
        repair.Deliver(Message(6));
        repair.Deliver(Message(7));
        history.ReleaseFirstRead();

        Assert.Equal([2, 3, 6, 7], await dispatched.WaitAsync());
        Assert.Equal([5L], dispatched.LostUpTo);
        Assert.Equal(2, history.Reads.Count);
        Assert.Equal(2, repair.Unrepaired);
    }

    [Fact]
    public async Task AResyncWhileARepairReads_IsCaughtUpTo_WhenTheRepairIsDone()
    {
        // 2 is lost and 3 shows it; 4 and 5 are lost too, with nothing after them: only the resync knows of them.
        var history = new History(Enumerable.Range(1, 5));
        var dispatched = new Dispatched(last: 5);
        var repair = new GapRepair(dispatched.Add, history.ReadAfterAsync, dispatched.Lost);
        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));
        repair.Deliver(Message(3));
        await repair.ResyncAsync((_, _) => Task.FromResult<ChannelPosition?>(new ChannelPosition(Epoch, 5)));
        history.ReleaseFirstRead();

        Assert.Equal([2, 3, 4, 5], await dispatched.WaitAsync());
        Assert.Equal(0, repair.Unrepaired);
    }

    [Fact]
    public async Task AReadThatFails_IsTriedAgain_BeforeAnythingCountsLost()
    {
        // Routing between owners: the first read throws, the second answers with no history.
        var history = new History(Enumerable.Range(1, 4), failures: 2);
        history.ReleaseFirstRead();
        var dispatched = new Dispatched(last: 4);
        var repair = new GapRepair(dispatched.Add, history.ReadAfterAsync, dispatched.Lost);
        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));
        repair.Deliver(Message(4));

        Assert.Equal([2, 3, 4], await dispatched.WaitAsync());
        Assert.Equal(3, history.Reads.Count);
        Assert.Equal(0, repair.Unrepaired);
    }

    [Fact]
    public async Task ATailNoReadReaches_IsNotCountedLost_AndTheNextResyncReadsItBack()
    {
        // Redis away: every read of the first resync fails; the tail is still in history.
        var history = new History(Enumerable.Range(1, 3), failures: 4);
        history.ReleaseFirstRead();
        var dispatched = new Dispatched(last: 3);
        var repair = new GapRepair(dispatched.Add, history.ReadAfterAsync, dispatched.Lost);
        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));
        static Task<ChannelPosition?> At3(string app, string channel) => Task.FromResult<ChannelPosition?>(new ChannelPosition(Epoch, 3));

        // The position says 3 was published; 2 and 3 never came and cannot be read now.
        await repair.ResyncAsync(At3);
        var deadline = DateTime.UtcNow + s_wait;
        while (history.Reads.Count < 4)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{history.Reads.Count} reads");
            await Task.Delay(20);
        }

        // The last failed read's repair has ended once a resync can start another: Redis is back.
        while (history.Reads.Count < 5 && DateTime.UtcNow < deadline)
        {
            await repair.ResyncAsync(At3);
            await Task.Delay(50);
        }

        Assert.Equal([2, 3], await dispatched.WaitAsync());
        Assert.Empty(dispatched.LostUpTo);
        Assert.Equal(0, repair.Unrepaired);
    }

    [Fact]
    public async Task AQuietCheck_ReadsBackALostLastMessage_OnlyOnceTheChannelHasBeenQuiet_AndAsksAgainOnlyAfterItMoves()
    {
        // 2 and 3 were published and lost, and nothing follows them: no jump will ever show it.
        var history = new History(Enumerable.Range(1, 3));
        history.ReleaseFirstRead();
        var dispatched = new Dispatched(last: 3);
        var repair = new GapRepair(dispatched.Add, history.ReadAfterAsync, dispatched.Lost);
        repair.Start("app", "ch", new ChannelPosition(Epoch, 0));
        repair.Deliver(Message(1));
        var asked = 0;
        Task<ChannelPosition?> At3(string app, string channel)
        {
            Interlocked.Increment(ref asked);
            return Task.FromResult<ChannelPosition?>(new ChannelPosition(Epoch, 3));
        }

        var behind = new List<(bool Presence, long Had, long Position)>();

        // Not quiet long enough yet: not asked.
        Assert.Equal(0, await repair.CheckQuietAsync(At3, TimeSpan.FromMinutes(1)));
        Assert.Equal(0, asked);

        // Quiet: asked once for the channel (both its cursors), and the tail read back.
        Assert.Equal(1, await repair.CheckQuietAsync(At3, TimeSpan.Zero, (_, _, presence, had, position) => behind.Add((presence, had, position))));
        Assert.Equal([1, 2, 3], await dispatched.WaitAsync());
        Assert.Equal(1, asked);
        Assert.Equal([(false, 1L, 3L)], behind);
        Assert.Equal(0, repair.Unrepaired);

        // The repair moved the cursor, so one more check; then nothing moves and nothing is asked.
        Assert.Equal(1, await repair.CheckQuietAsync(At3, TimeSpan.Zero));
        Assert.Equal(0, await repair.CheckQuietAsync(At3, TimeSpan.Zero));
        Assert.Equal(2, asked);
        Assert.Equal([(1L, 2)], history.Reads);
    }

    [Fact]
    public async Task AResyncThatCannotReadAPosition_LeavesTheChannelToTheNextQuietCheck()
    {
        var history = new History(Enumerable.Range(1, 2));
        history.ReleaseFirstRead();
        var dispatched = new Dispatched(last: 2);
        var repair = new GapRepair(dispatched.Add, history.ReadAfterAsync, dispatched.Lost);
        repair.Start("app", "ch", new ChannelPosition(Epoch, 1));

        // Routing cannot answer the resync (no owner for the shard yet): nothing read, the channel marked unsure.
        await repair.ResyncAsync((_, _) => Task.FromException<ChannelPosition?>(new TimeoutException("no routing owner")));
        Assert.Empty(history.Reads);

        // The next check asks again even though the channel never moved (however long "quiet" is), and reads 2 back.
        Assert.Equal(1, await repair.CheckQuietAsync((_, _) => Task.FromResult<ChannelPosition?>(new ChannelPosition(Epoch, 2)), TimeSpan.FromHours(1)));
        Assert.Equal([2], await dispatched.WaitAsync());
    }

    // A channel's history as routing would answer it: its first read waits for ReleaseFirstRead; the first `failures`
    // reads fail (alternately by throwing and by answering with something other than history).
    private sealed class History(IEnumerable<int> seqs, int failures = 0)
    {
        private readonly List<RelayMessage> _messages = [.. seqs.Select(static s => Message(s))];
        private readonly TaskCompletionSource _firstRead = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly List<(long After, int Limit)> _reads = [];

        public List<(long After, int Limit)> Reads
        {
            get
            {
                lock (_reads)
                {
                    return [.. _reads];
                }
            }
        }

        public void ReleaseFirstRead() => _firstRead.TrySetResult();

        public async Task<(string Epoch, IReadOnlyList<RelayMessage> Messages)?> ReadAfterAsync(string app, string channel, bool presence, long after, int limit)
        {
            int count;
            lock (_reads)
            {
                _reads.Add((after, limit));
                count = _reads.Count;
            }

            if (count == 1)
            {
                await _firstRead.Task.WaitAsync(s_wait);
            }

            if (count <= failures)
            {
                return count % 2 == 1 ? throw new TimeoutException("routing did not answer") : null;
            }

            return (Epoch, _messages.Where(m => m.Seq > after).Take(limit).ToList());
        }
    }

    // What the repair dispatched (seqs, in order) and reported lost; done once `last` goes out.
    private sealed class Dispatched(long last)
    {
        private readonly List<long> _seqs = [];
        private readonly List<long> _lost = [];
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public List<long> LostUpTo
        {
            get
            {
                lock (_lost)
                {
                    return [.. _lost];
                }
            }
        }

        public void Add(RelayMessage message)
        {
            lock (_seqs)
            {
                _seqs.Add(message.Seq);
            }

            if (message.Seq == last)
            {
                _done.TrySetResult();
            }
        }

        public void Lost(string app, string channel, string epoch, long upTo, bool presence)
        {
            lock (_lost)
            {
                _lost.Add(upTo);
            }
        }

        public async Task<List<long>> WaitAsync()
        {
            await _done.Task.WaitAsync(s_wait);
            lock (_seqs)
            {
                return [.. _seqs];
            }
        }
    }
}
