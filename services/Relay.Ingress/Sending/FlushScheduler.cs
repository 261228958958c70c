namespace Relay.Ingress.Sending;

/// <summary>
/// Defers flushes: a delivery writes its frame into the connection's send buffer and asks for a flush here; one
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
    /// Asks for one flush of <paramref name="target"/> now; the caller makes sure it asks once per write burst. Senders
    /// ask through <see cref="DeliveryBatch.RequestFlush"/>, which holds the request while a batch is current.
    /// </summary>
    public void Schedule(IFlushTarget target)
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

    /// <summary>Flushes <paramref name="target"/> on this thread; a connection that fails is left to its own loops.</summary>
    public static void FlushNow(IFlushTarget target)
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
                FlushNow(target);
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
