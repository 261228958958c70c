namespace Relay.Ingress.Sending;

/// <summary>
/// The hand-over between a loop that ends its frame to wait, instead of awaiting (nothing allocated, no frame held),
/// and the events that must start it again. The loop reads <see cref="Observe"/> before the checks that may lead it to
/// wait, then calls <see cref="TrySuspend"/>; a waker changes what the loop checks, then calls <see cref="Wake"/>. Either
/// the wake-up finds the loop's mark and its caller starts the loop again, or it came before the mark and the loop sees
/// the count change and goes on itself: a wake-up is never lost, and the loop is never started twice. One loop, any
/// number of wakers; kept as a field (it is mutable).
/// </summary>
internal struct LoopWake
{
    private int _suspended;
    private int _wakes;

    /// <summary>The wake-ups so far, read by the loop before it checks whether it must wait.</summary>
    public int Observe() => Volatile.Read(ref _wakes);

    /// <summary>
    /// The loop is about to end its frame to wait. True: it may (no wake-up since <paramref name="seen"/>, or one since has
    /// taken its mark and starts it again). False: a wake-up came before the mark, and the loop goes on itself.
    /// </summary>
    public bool TrySuspend(int seen)
    {
        Interlocked.Exchange(ref _suspended, 1);
        return Volatile.Read(ref _wakes) == seen || Interlocked.Exchange(ref _suspended, 0) == 0;
    }

    /// <summary>Something the loop may be waiting for happened. True: the loop had suspended, and the caller must start it again.</summary>
    public bool Wake()
    {
        Interlocked.Increment(ref _wakes);
        return Interlocked.Exchange(ref _suspended, 0) == 1;
    }
}
