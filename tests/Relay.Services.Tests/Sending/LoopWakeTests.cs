using Relay.Ingress.Sending;

namespace Relay.Services.Tests.Sending;

/// <summary>
/// <see cref="LoopWake"/>: the MQTT write loop ends its frame while a full window holds it back, and the acknowledgement
/// that frees a slot starts it again. Each order of the two sides by hand, then a loop and two wakers racing.
/// </summary>
public sealed class LoopWakeTests
{
    [Fact]
    public void NoWakeUp_LoopSuspends_TheNextWakeUpStartsItOnce()
    {
        var wake = default(LoopWake);
        Assert.True(wake.TrySuspend(wake.Observe()));
        Assert.True(wake.Wake());
        Assert.False(wake.Wake());
    }

    [Fact]
    public void WakeUpBetweenTheChecksAndTheMark_LoopGoesOn_AndIsNotStartedAgain()
    {
        var wake = default(LoopWake);
        var seen = wake.Observe();

        // The loop found nothing to do; a slot is freed before it marks itself suspended: nobody to start yet.
        Assert.False(wake.Wake());
        Assert.False(wake.TrySuspend(seen));

        // The loop went on; the next wake-up finds no mark (the loop is running) and starts nothing.
        Assert.False(wake.Wake());
    }

    [Fact]
    public void WakeUpsWhileRunning_AreSeenAtTheNextSuspend()
    {
        var wake = default(LoopWake);
        Assert.False(wake.Wake());
        Assert.False(wake.Wake());

        // Read after those: they are what the loop's checks saw, so it may suspend.
        var seen = wake.Observe();
        Assert.True(wake.TrySuspend(seen));
        Assert.True(wake.Wake());
    }

    // A loop that consumes work and suspends when it finds none, and two wakers adding work and waking it, as fast as
    // they can: every unit of work is consumed (the loop is never left suspended with work and nobody to start it), and
    // each suspension is ended by one start at most (a second start would run a second loop beside the first).
    [Fact]
    public async Task LoopAndWakers_Racing_NoWakeUpIsLost_TheLoopNeverRunsTwice()
    {
        const int PerWaker = 200_000;
        var wake = new Box();
        long pending = 0;
        long consumed = 0;
        var suspensions = 0;
        var restarts = 0;
        using var starts = new SemaphoreSlim(0);

        void RunLoop()
        {
            while (true)
            {
                var seen = wake.Value.Observe();
                var work = Interlocked.Exchange(ref pending, 0);
                if (work > 0)
                {
                    Interlocked.Add(ref consumed, work);
                    continue;
                }

                if (wake.Value.TrySuspend(seen))
                {
                    Interlocked.Increment(ref suspensions);
                    return;
                }
            }
        }

        var loop = Task.Run(async () =>
        {
            RunLoop();
            while (Interlocked.Read(ref consumed) < 2L * PerWaker)
            {
                if (await starts.WaitAsync(TimeSpan.FromSeconds(10)))
                {
                    RunLoop();
                }
                else if (Interlocked.Read(ref pending) > 0)
                {
                    throw new InvalidOperationException($"the loop stayed suspended with {Interlocked.Read(ref pending)} units of work left: a wake-up was lost");
                }
            }
        });

        var wakers = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < PerWaker; i++)
            {
                Interlocked.Increment(ref pending);
                if (wake.Value.Wake())
                {
                    Interlocked.Increment(ref restarts);
                    starts.Release();
                }
            }
        })).ToArray();

        await Task.WhenAll(wakers).WaitAsync(TimeSpan.FromSeconds(60));
        await loop.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(2L * PerWaker, Interlocked.Read(ref consumed));
        Assert.InRange(restarts, suspensions - 1, suspensions);
    }

    // The struct lives in a field of a shared object, as in the connection's side state.
    private sealed class Box
    {
        public LoopWake Value;
    }
}
