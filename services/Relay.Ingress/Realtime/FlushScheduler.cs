namespace Relay.Ingress.Realtime;

/// <summary>Something written into but not yet flushed.</summary>
internal interface IFlushTarget
{
    void Flush();
}

/// <summary>
/// Defers flushes: a delivery writes its frame into the connection's transport and asks for a flush here; one
/// thread-pool work item then flushes every connection that asked, once each. Frames that reach a connection before
/// its turn go out in the same send, so under load each socket write carries many messages, and nothing waits on
/// a timer. The two lists are swapped, never reallocated, so scheduling allocates nothing in steady state.
/// </summary>
internal sealed class FlushScheduler : IThreadPoolWorkItem
{
    private readonly Lock _gate = new();
    private List<IFlushTarget> _waiting = new(256);
    private List<IFlushTarget> _flushing = new(256);
    private bool _scheduled;

    /// <summary>
    /// Asks for one flush of <paramref name="target"/>; the caller makes sure it asks once per write burst. Inside a
    /// <see cref="DeliveryBatch"/> the request waits until the batch ends.
    /// </summary>
    public void Schedule(IFlushTarget target)
    {
        if (DeliveryBatch.Current is { } batch)
        {
            batch.Defer(this, target);
            return;
        }

        ScheduleNow(target);
    }

    internal void ScheduleNow(IFlushTarget target)
    {
        bool start;
        lock (_gate)
        {
            _waiting.Add(target);
            start = !_scheduled;
            _scheduled = true;
        }

        if (start)
        {
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    void IThreadPoolWorkItem.Execute()
    {
        while (true)
        {
            List<IFlushTarget> batch;
            lock (_gate)
            {
                if (_waiting.Count == 0)
                {
                    _scheduled = false;
                    return;
                }

                batch = _waiting;
                _waiting = _flushing;
                _flushing = batch;
            }

            foreach (var target in batch)
            {
                try
                {
                    target.Flush();
                }
                catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or System.Net.Sockets.SocketException)
                {
                    // That connection is failing; its own loops see it and end it. The others still get their flush.
                }
            }

            batch.Clear();
            if (batch.Capacity > 16 * 1024 && batch.Count == 0)
            {
                // A burst to many connections is over: let the big list go.
                batch.Capacity = 256;
            }
        }
    }
}

/// <summary>
/// The flushes asked for while one connection's burst of requests is handled (the publishes of one read). Every
/// subscriber gets all of the burst's messages in one send, as NATS does with the messages of one read, instead of
/// a send per message. Current only while the handling runs synchronously on this thread; the connection submits
/// the batch before it waits for anything.
/// </summary>
internal sealed class DeliveryBatch
{
    [ThreadStatic]
    private static DeliveryBatch? t_current;

    // A list per thread to lend to batches: a connection holds one only while it has flushes deferred.
    [ThreadStatic]
    private static List<(FlushScheduler Scheduler, IFlushTarget Target)>? t_spare;

    private List<(FlushScheduler Scheduler, IFlushTarget Target)>? _deferred;

    public static DeliveryBatch? Current => t_current;

    public int Count => _deferred?.Count ?? 0;

    /// <summary>Makes this batch current on this thread until <see cref="Leave"/>.</summary>
    public void Enter() => t_current = this;

    public static void Leave() => t_current = null;

    public void Defer(FlushScheduler scheduler, IFlushTarget target)
    {
        if (_deferred is null)
        {
            _deferred = t_spare ?? [];
            t_spare = null;
        }

        _deferred.Add((scheduler, target));
    }

    /// <summary>Hands every deferred flush to its scheduler.</summary>
    public void Submit()
    {
        if (_deferred is null)
        {
            return;
        }

        foreach (var (scheduler, target) in _deferred)
        {
            scheduler.ScheduleNow(target);
        }

        _deferred.Clear();
        if (_deferred.Capacity <= 16 * 1024)
        {
            t_spare ??= _deferred;
        }

        _deferred = null;
    }
}
