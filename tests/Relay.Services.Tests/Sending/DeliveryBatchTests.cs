using Relay.Ingress.Sending;

namespace Relay.Services.Tests.Sending;

/// <summary>
/// The deferred flush's bounds (<see cref="DeliveryBatch"/>): a burst's flushes wait on the publisher's work, and on its
/// input for at most <see cref="DeliveryBatch.MaxDelay"/>, without reading the clock at every check.
/// </summary>
public sealed class DeliveryBatchTests
{
    // What the receive loop does per publish of a burst already in its buffer: checks after the request, after the wait
    // for input, after the frame's header and after its payload.
    private const int ChecksPerPublish = 4;

    [Fact]
    public void IsDue_ThroughABurstAlreadyThere_ReadsTheClockOncePerChecksPerClockRead()
    {
        var clock = new SteppingClock(TimeSpan.FromTicks(1));
        var batch = new DeliveryBatch(clock);
        Defer(batch, new CountingTarget());

        for (var publish = 0; publish < DeliveryBatch.MaxWork - 1; publish++)
        {
            batch.CountRequest();
            for (var check = 0; check < ChecksPerPublish; check++)
            {
                Assert.False(batch.IsDue);
            }
        }

        // Before: a reading at every request and every check, 315 for these 63 publishes.
        var checks = (DeliveryBatch.MaxWork - 1) * ChecksPerPublish;
        Assert.True(clock.Readings <= checks / DeliveryBatch.ChecksPerClockRead + 1, $"{clock.Readings} clock readings for {checks} checks");
    }

    [Fact]
    public void IsDue_OnInputPastMaxDelay_IsTrueWithinTwiceChecksPerClockRead()
    {
        // Each reading of the clock moves it on by a tenth of the bound: the input trickles in, every check finds some.
        var clock = new SteppingClock(DeliveryBatch.MaxDelay / 10);
        var batch = new DeliveryBatch(clock);
        Defer(batch, new CountingTarget());
        batch.CountRequest();

        var checks = 0;
        while (!batch.IsDue)
        {
            checks++;
            Assert.True(checks <= 12 * DeliveryBatch.ChecksPerClockRead, $"still not due after {checks} checks on input");
        }

        // The bound: MaxDelay on the clock (ten readings, each 16 checks apart), and one reading to start the count.
        Assert.True(checks >= 10 * DeliveryBatch.ChecksPerClockRead - 1, $"due after only {checks} checks");
    }

    [Fact]
    public void IsDue_AfterMaxWorkRequests_IsTrueWithoutTheClock()
    {
        var clock = new SteppingClock(TimeSpan.FromTicks(1));
        var batch = new DeliveryBatch(clock);
        var target = new CountingTarget();
        Defer(batch, target);
        for (var i = 0; i < DeliveryBatch.MaxWork; i++)
        {
            batch.CountRequest();
        }

        Assert.True(batch.IsDue);
        batch.Submit();
        Assert.False(batch.IsDue);
    }

    [Fact]
    public void Submit_OfABurstToFewConnections_FlushesThemOnThePublishersThread()
    {
        // publish-ws-1's burst: the publisher's own oks and one subscriber, each on a scheduler of its own.
        var batch = new DeliveryBatch(TimeProvider.System);
        var targets = Enumerable.Range(0, DeliveryBatch.InlineFlushes).Select(_ => new CountingTarget()).ToArray();
        batch.Enter();
        try
        {
            foreach (var target in targets)
            {
                DeliveryBatch.RequestFlush(new FlushScheduler(), target);
            }
        }
        finally
        {
            DeliveryBatch.Leave();
        }

        Assert.All(targets, target => Assert.Equal(0, target.Flushes));
        batch.Submit();

        // Before: each went to its scheduler's work item, a thread-pool hop in series with the publisher's next burst.
        var thread = Environment.CurrentManagedThreadId;
        Assert.All(targets, target => Assert.Equal([thread], target.Threads));
    }

    [Fact]
    public async Task Submit_OfABurstToManyConnections_LeavesTheFlushesToTheSchedulers()
    {
        // Flushes that block until released: a Submit that flushed on its own thread would not return.
        using var release = new ManualResetEventSlim();
        var batch = new DeliveryBatch(TimeProvider.System);
        var schedulers = new[] { new FlushScheduler(), new FlushScheduler() };
        var targets = Enumerable.Range(0, DeliveryBatch.InlineFlushes + 1).Select(_ => new CountingTarget(release)).ToArray();
        var submitted = Task.Run(() =>
        {
            batch.Enter();
            try
            {
                for (var i = 0; i < targets.Length; i++)
                {
                    DeliveryBatch.RequestFlush(schedulers[i % 2], targets[i]);
                }
            }
            finally
            {
                DeliveryBatch.Leave();
            }

            batch.Submit();
        });

        try
        {
            await submitted.WaitAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            release.Set();
        }

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (targets.Any(target => Volatile.Read(ref target.Flushes) == 0) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }

        Assert.All(targets, target => Assert.Equal(1, Volatile.Read(ref target.Flushes)));
    }

    private static void Defer(DeliveryBatch batch, IFlushTarget target)
    {
        batch.Enter();
        try
        {
            DeliveryBatch.RequestFlush(new FlushScheduler(), target);
        }
        finally
        {
            DeliveryBatch.Leave();
        }
    }

    private sealed class CountingTarget(ManualResetEventSlim? release = null) : IFlushTarget
    {
        public int Flushes;

        public List<int> Threads { get; } = [];

        public void Flush()
        {
            release?.Wait(TimeSpan.FromSeconds(30));
            lock (Threads)
            {
                Threads.Add(Environment.CurrentManagedThreadId);
            }

            Interlocked.Increment(ref Flushes);
        }
    }

    /// <summary>A monotonic clock that moves on by <c>step</c> at each reading, and counts its readings.</summary>
    private sealed class SteppingClock(TimeSpan step) : TimeProvider
    {
        private long _ticks = 1_000_000;

        public int Readings { get; private set; }

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp()
        {
            Readings++;
            _ticks += step.Ticks;
            return _ticks;
        }
    }
}
