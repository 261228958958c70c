using System.Threading.Tasks.Sources;

namespace Relay.Ingress.Sending;

/// <summary>
/// A connection's outbound queue, bounded in bytes: many writers (deliveries), one reader (the write loop). A writer
/// says how many bytes the connection may hold in all (its budget) and how many it already holds outside the queue
/// (its transport's buffer), so one count bounds everything the connection has not sent. Unlike a bounded
/// <c>Channel&lt;T&gt;</c>, waking the reader reuses one value-task source, so a delivery allocates nothing; the ring
/// grows with the backlog and is given back after quiet sweeps, so an idle connection holds none.
/// </summary>
/// <typeparam name="T">The item type.</typeparam>
internal sealed class SendQueue<T> : IValueTaskSource<bool>
{
    private const int MinimumSlots = 4;

    /// <summary>Quiet sweeps (seconds) before an empty ring is given back.</summary>
    private const int QuietTrimsBeforeRelease = 10;

    private readonly Lock _gate;
    private readonly Func<T, int> _size;
    private readonly IngressMetrics? _metrics;
    private ManualResetValueTaskSourceCore<bool> _signal = new() { RunContinuationsAsynchronously = true };
    private T[] _ring = [];
    private int _head;
    private int _count;
    private long _bytes;
    private bool _completed;
    private bool _readerWaiting;

    // A reader started on demand (MQTT's write loop): stopped while nothing is queued, started by the next item or by
    // Complete, once (ContinueOrStop and TryAdd decide under the lock, so no wake-up is lost and none is doubled).
    private readonly ISendQueueReader? _reader;
    private bool _readerStopped;
    private QuietSweeps _quiet;

    /// <param name="size">The bytes an item stands for (a static lambda: one delegate for every connection).</param>
    /// <param name="gate">A lock to share (a connection's write gate, saving one per connection), or null for its own.</param>
    /// <param name="metrics">Where queued and dequeued frames are counted (the queue depth gauge and frames out), or null.</param>
    /// <param name="reader">
    /// A reader that runs only while there is something to read (<see cref="ContinueOrStop"/>), started by the queue
    /// (first by the first item), or null for one that waits (<see cref="WaitToReadAsync"/>).
    /// </param>
    public SendQueue(Func<T, int> size, Lock? gate = null, IngressMetrics? metrics = null, ISendQueueReader? reader = null)
    {
        _size = size;
        _gate = gate ?? new Lock();
        _metrics = metrics;
        _reader = reader;
        _readerStopped = reader is not null;
    }

    /// <summary>The lock the queue is used under (shared with the connection's send buffer when one was given).</summary>
    public Lock Gate => _gate;

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _count;
            }
        }
    }

    /// <summary>Bytes queued (see the constructor's size).</summary>
    public long Bytes
    {
        get
        {
            lock (_gate)
            {
                return _bytes;
            }
        }
    }

    /// <summary>
    /// Adds an item if the connection stays within <paramref name="budget"/> bytes: what is queued, plus
    /// <paramref name="heldElsewhere"/> (bytes the connection holds outside the queue), plus the item. False when it
    /// does not fit (a slow consumer) or the queue is completed.
    /// </summary>
    public bool TryWrite(T item, long budget, long heldElsewhere = 0) => TryAdd(item, budget - heldElsewhere);

    /// <summary>Adds an item whatever its size (the last frame a connection is sent); false when the queue is completed.</summary>
    public bool TryWrite(T item) => TryAdd(item, long.MaxValue);

    private bool TryAdd(T item, long room)
    {
        var size = _size(item);
        var start = false;
        lock (_gate)
        {
            if (_completed || size > room - _bytes)
            {
                return false;
            }

            if (_count == _ring.Length)
            {
                Resize(Math.Max(MinimumSlots, _ring.Length * 2));
            }

            _ring[(_head + _count) % _ring.Length] = item;
            _count++;
            _bytes += size;
            _metrics?.FrameQueued();
            _quiet.Used();
            if (_readerStopped)
            {
                _readerStopped = false;
                start = true;
            }
            else if (_readerWaiting)
            {
                // Under the lock: the reader resets the signal under it (WaitToReadAsync), and a reader that saw this
                // completion before SetResult returned must not reset it while SetResult still looks for its continuation.
                _readerWaiting = false;
                _signal.SetResult(true);
            }
        }

        if (start)
        {
            _reader!.Start();
        }

        return true;
    }

    /// <summary>Removes every queued item (a slow consumer's backlog is dropped, not sent).</summary>
    public void Clear()
    {
        lock (_gate)
        {
            Array.Clear(_ring);
            _head = 0;
            _metrics?.FramesDropped(_count);
            _count = 0;
            _bytes = 0;
        }
    }

    /// <summary>No more writes; the reader drains what is queued and then sees the end.</summary>
    public void Complete()
    {
        var start = false;
        lock (_gate)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            if (_readerStopped)
            {
                // A reader on demand starts to see the end (and drain what it must before it).
                _readerStopped = false;
                start = true;
            }
            else if (_readerWaiting)
            {
                _readerWaiting = false;
                _signal.SetResult(false);
            }
        }

        if (start)
        {
            _reader!.Start();
        }
    }

    /// <summary>
    /// For a reader on demand, before it would wait: true when an item is queued or the queue is completed (read on:
    /// <see cref="WaitToReadAsync"/> answers at once); false when the queue is empty and open, and the reader stops (it
    /// holds nothing while idle: no frame awaiting the next item): the next item, or <see cref="Complete"/>, starts it
    /// again (<see cref="ISendQueueReader.Start"/>), exactly once.
    /// </summary>
    public bool ContinueOrStop()
    {
        lock (_gate)
        {
            if (_count > 0 || _completed)
            {
                return true;
            }

            _readerStopped = true;
            return false;
        }
    }

    /// <summary>Waits until an item is queued (true) or the queue is completed and empty (false). One reader only.</summary>
    public ValueTask<bool> WaitToReadAsync()
    {
        lock (_gate)
        {
            if (_count > 0)
            {
                return new ValueTask<bool>(true);
            }

            if (_completed)
            {
                return new ValueTask<bool>(false);
            }

            _signal.Reset();
            _readerWaiting = true;
            return new ValueTask<bool>(this, _signal.Version);
        }
    }

    public bool TryRead(out T item)
    {
        lock (_gate)
        {
            if (_count == 0)
            {
                item = default!;
                return false;
            }

            item = _ring[_head];
            _ring[_head] = default!;
            _head = (_head + 1) % _ring.Length;
            _count--;
            _bytes -= _size(item);
            _metrics?.FrameDequeued();

            return true;
        }
    }

    /// <summary>
    /// Gives the ring back once nothing was queued for <see cref="QuietTrimsBeforeRelease"/> calls in a row (the
    /// node's once-a-second sweep): a connection that had a backlog a while ago holds no slots, and one with an
    /// occasional backlog keeps its ring instead of growing it again each time.
    /// </summary>
    public void TrimIfUnused()
    {
        lock (_gate)
        {
            if (_quiet.Sweep(busy: _count > 0, QuietTrimsBeforeRelease) && _ring.Length > 0)
            {
                _ring = [];
                _head = 0;
            }
        }
    }

    /// <summary>
    /// Calls <paramref name="visit"/> with each item queued, oldest first, under the queue's lock (keep it short): nothing
    /// is taken. For a look at what a connection holds (an MQTT session's snapshot), not for its reader.
    /// </summary>
    public void ForEach<TState>(TState state, Action<T, TState> visit)
    {
        lock (_gate)
        {
            for (var i = 0; i < _count; i++)
            {
                visit(_ring[(_head + i) % _ring.Length], state);
            }
        }
    }

    public bool TryPeek(out T item)
    {
        lock (_gate)
        {
            item = _count == 0 ? default! : _ring[_head];
            return _count > 0;
        }
    }

    bool IValueTaskSource<bool>.GetResult(short token) => _signal.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _signal.GetStatus(token);

    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _signal.OnCompleted(continuation, state, token, flags);

    private void Resize(int size)
    {
        var next = new T[size];
        for (var i = 0; i < _count; i++)
        {
            next[i] = _ring[(_head + i) % _ring.Length];
        }

        _ring = next;
        _head = 0;
    }
}

/// <summary>A <see cref="SendQueue{T}"/>'s reader that runs only while there is something to read.</summary>
internal interface ISendQueueReader
{
    /// <summary>
    /// Starts the reader, off the caller's thread (the caller may be a thread delivering to many connections), as a
    /// waiting reader's continuation runs. Called outside the queue's lock, once per stop: after <see cref="SendQueue{T}.ContinueOrStop"/> returned false (or at
    /// first), by the next item or by completion.
    /// </summary>
    void Start();
}
