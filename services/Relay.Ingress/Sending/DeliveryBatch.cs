namespace Relay.Ingress.Sending;

/// <summary>
/// The flushes asked for while one connection's requests are handled (a publisher's burst): every subscriber gets all
/// of the burst's messages in one send, as NATS sends what one read delivered, instead of a send per message. Current
/// only while a request is handled synchronously on this thread (<see cref="Enter"/>, <see cref="Leave"/>).
/// <para>
/// The rule, since other connections' output waits on it: the deferred flushes are sent (<see cref="Submit"/>: on this
/// thread for a burst to a few connections, through their schedulers for more) when the connection whose requests are
/// handled is about to wait for anything (its input, a request that went
/// asynchronous); or once <see cref="MaxWork"/> units of its work were done since the first was deferred (requests of
/// any type, and WebSocket control frames, which its socket answers by itself); or once it has spent
/// <see cref="MaxDelay"/> on its input since the first was deferred or since its last request, whichever is later
/// (reading a frame that trickles in, pings), whichever comes first. The connection checks between requests, between
/// the pieces of a frame it reads and at least every 64 control frames; the time on input is read from the clock at
/// every <see cref="ChecksPerClockRead"/>th check. So what another connection's output waits for is this one's work, at
/// most <see cref="MaxWork"/> requests of it, and never its input for longer than <see cref="MaxDelay"/> and that many
/// checks (each one input already there: a wait for input ends the batch). Time spent handling requests (a publish fanning out to many subscribers) does not end a
/// batch early: cutting a burst's fan-out into time slices would send each subscriber a burst's messages in
/// several system calls (see docs/benchmarks.md for what a wall-clock bound cost).
/// </para>
/// </summary>
internal sealed class DeliveryBatch(TimeProvider time)
{
    /// <summary>Units of work (requests, control frames) after which the deferred flushes go out although more input waits.</summary>
    public const int MaxWork = 64;

    /// <summary>
    /// The longest deferred flushes wait on the connection's input: 1 ms, a hundred times what reading the next
    /// frame of a burst takes when it is already there.
    /// </summary>
    public static readonly TimeSpan MaxDelay = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// Checks of the batch's bounds per reading of the clock. A check that continues at once found its input already
    /// there, so a few take microseconds; reading the clock at each (five times per publish) was 5.9% of the server's
    /// CPU in <c>publish-ws-1</c> on this VM, where <c>clock_gettime</c> is slow (docs/benchmarks.md).
    /// </summary>
    public const int ChecksPerClockRead = 16;

    /// <summary>
    /// Deferred flushes a burst sends itself when it ends, rather than through the schedulers: each is one non-blocking
    /// send, and a work item costs a thread-pool hop per scheduler (in <c>publish-ws-1</c> two per 64 publishes, the
    /// publisher's <c>ok</c>s and the subscriber, in series with the next burst; docs/benchmarks.md). Past this many the
    /// schedulers spread the sends over the cores while the publisher goes on.
    /// </summary>
    public const int InlineFlushes = 8;

    private const long NotRead = long.MinValue;

    [ThreadStatic]
    private static DeliveryBatch? t_current;

    // A list per thread to lend to batches: a connection holds one only while it has flushes deferred.
    [ThreadStatic]
    private static List<(FlushScheduler Scheduler, IFlushTarget Target)>? t_spare;

    private List<(FlushScheduler Scheduler, IFlushTarget Target)>? _deferred;

    // Since when the connection has been on its input: the first clock reading after the first deferral or after the
    // last request (NotRead: not read since).
    private long _inputSinceTicks = NotRead;
    private int _work;
    private int _checks;

    public int Count => _deferred?.Count ?? 0;

    /// <summary>Whether the batch must end now by the rule above: <see cref="MaxWork"/> done, or <see cref="MaxDelay"/> on input.</summary>
    public bool IsDue
    {
        get
        {
            if (_deferred is null)
            {
                return false;
            }

            if (_work >= MaxWork)
            {
                return true;
            }

            if (++_checks < ChecksPerClockRead)
            {
                return false;
            }

            _checks = 0;
            var now = time.GetTimestamp();
            if (_inputSinceTicks == NotRead)
            {
                _inputSinceTicks = now;
                return false;
            }

            return time.GetElapsedTime(_inputSinceTicks, now) >= MaxDelay;
        }
    }

    /// <summary>
    /// The flush policy, the one place it is decided: asks for <paramref name="target"/>'s flush (once per write burst,
    /// the caller sees to that). While a batch is current on this thread (another connection's request is being
    /// handled), the flush waits for that batch's end by the rule above; otherwise <paramref name="scheduler"/> gets it now.
    /// </summary>
    public static void RequestFlush(FlushScheduler scheduler, IFlushTarget target)
    {
        if (t_current is { } batch)
        {
            batch.Defer(scheduler, target);
        }
        else
        {
            scheduler.Schedule(target);
        }
    }

    /// <summary>Makes this batch current on this thread until <see cref="Leave"/>.</summary>
    public void Enter() => t_current = this;

    public static void Leave() => t_current = null;

    /// <summary>A request was handled: one unit of work, and the time on input starts again.</summary>
    public void CountRequest()
    {
        if (_deferred is not null)
        {
            _work++;
            _inputSinceTicks = NotRead;
        }
    }

    /// <summary>Control frames were answered: units of work, though the time on input goes on.</summary>
    public void CountControlFrames(long frames)
    {
        if (_deferred is not null)
        {
            _work = (int)Math.Min(MaxWork, _work + frames);
        }
    }

    /// <summary>Holds <paramref name="target"/>'s flush until the batch ends (see the rule above).</summary>
    private void Defer(FlushScheduler scheduler, IFlushTarget target)
    {
        if (_deferred is null)
        {
            _deferred = t_spare ?? [];
            t_spare = null;
            _inputSinceTicks = NotRead;
            _checks = 0;
        }

        _deferred.Add((scheduler, target));
    }

    /// <summary>
    /// Sends the deferred flushes: a burst that wrote to at most <see cref="InlineFlushes"/> connections flushes them here,
    /// on the publisher's thread, as NATS flushes after its read; a larger one hands each to its scheduler. The batch stays
    /// current and starts again empty.
    /// </summary>
    public void Submit()
    {
        if (_deferred is null)
        {
            return;
        }

        if (_deferred.Count <= InlineFlushes)
        {
            foreach (var (_, target) in _deferred)
            {
                FlushScheduler.FlushNow(target);
            }
        }
        else
        {
            foreach (var (scheduler, target) in _deferred)
            {
                scheduler.Schedule(target);
            }
        }

        _deferred.Clear();
        if (_deferred.Capacity <= 16 * 1024)
        {
            t_spare ??= _deferred;
        }

        _deferred = null;
        _work = 0;
    }
}
