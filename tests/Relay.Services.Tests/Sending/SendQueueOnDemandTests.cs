using Relay.Ingress.Sending;

namespace Relay.Services.Tests.Sending;

/// <summary>
/// A <see cref="SendQueue{T}"/> reader started on demand (MQTT's write loop): it stops whenever the queue is empty, and
/// the next item or the queue's end starts it again. Every item written is read, no start is lost or doubled (two runs
/// never overlap), and completion starts a stopped reader once to see the end.
/// </summary>
public sealed class SendQueueOnDemandTests
{
    [Fact]
    public async Task WritersRacingAReaderThatStopsWhenEmpty_EveryItemIsRead_OneRunAtATime()
    {
        const int Writers = 4;
        const int PerWriter = 25_000;
        var reader = new OnDemandReader();
        var queue = reader.Queue;
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(() =>
        {
            for (var i = 0; i < PerWriter; i++)
            {
                Assert.True(queue.TryWrite(w * PerWriter + i));
                if (i % 1024 == 0)
                {
                    // Now and then the reader drains the queue and stops, so the next writes race a stop (however the
                    // thread pool schedules the reader on a busy machine).
                    var until = DateTime.UtcNow.AddSeconds(30);
                    while (queue.Count > 0 && DateTime.UtcNow < until)
                    {
                        Thread.Sleep(1);
                    }
                }
                else if (i % 16 == 0)
                {
                    Thread.Yield();
                }
            }
        })).ToArray();

        await Task.WhenAll(writers).WaitAsync(TimeSpan.FromMinutes(2));
        queue.Complete();
        await reader.Ended.Task.WaitAsync(TimeSpan.FromMinutes(2));

        Assert.Equal(Writers * PerWriter, reader.Read);
        Assert.Equal(0, reader.Overlaps);
    }

    [Fact]
    public async Task CompleteWithTheReaderStopped_StartsItOnce_AndItSeesTheEnd()
    {
        var reader = new OnDemandReader();
        Assert.True(reader.Queue.TryWrite(1));
        await reader.Idle(TimeSpan.FromSeconds(30));

        reader.Queue.Complete();
        reader.Queue.Complete();
        await reader.Ended.Task.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(2, reader.Starts);
        Assert.Equal(1, reader.Read);
        Assert.False(reader.Queue.TryWrite(2));
        Assert.Equal(2, reader.Starts);
    }

    [Fact]
    public void NothingWritten_TheReaderIsNeverStarted()
    {
        var reader = new OnDemandReader();
        Assert.Equal(0, reader.Starts);
    }

    /// <summary>Reads as MQTT's write loop does: until <see cref="SendQueue{T}.ContinueOrStop"/> says stop, on the thread pool.</summary>
    private sealed class OnDemandReader : ISendQueueReader
    {
        private int _running;
        private int _starts;
        private int _read;
        private int _overlaps;

        public OnDemandReader() => Queue = new SendQueue<int>(static _ => 1, reader: this);

        public SendQueue<int> Queue { get; }

        public TaskCompletionSource Ended { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Starts => Volatile.Read(ref _starts);

        public int Read => Volatile.Read(ref _read);

        public int Overlaps => Volatile.Read(ref _overlaps);

        public void Start()
        {
            Interlocked.Increment(ref _starts);
            ThreadPool.QueueUserWorkItem(_ => Run());
        }

        /// <summary>Waits until the reader has stopped with the queue empty.</summary>
        public async Task Idle(TimeSpan limit)
        {
            var until = DateTime.UtcNow + limit;
            while (Queue.Count > 0 || Volatile.Read(ref _running) != 0)
            {
                Assert.True(DateTime.UtcNow < until, "the reader did not stop");
                await Task.Delay(10);
            }
        }

        private void Run()
        {
            while (true)
            {
                if (Interlocked.Exchange(ref _running, 1) != 0)
                {
                    Interlocked.Increment(ref _overlaps);
                }

                while (Queue.TryRead(out _))
                {
                    Interlocked.Increment(ref _read);
                }

                // Not running from here: a start that follows the stop below is a new run, not an overlap.
                Volatile.Write(ref _running, 0);
                if (!Queue.ContinueOrStop())
                {
                    return;
                }

                if (!Queue.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
                {
                    Ended.TrySetResult();
                    return;
                }
            }
        }
    }
}
