namespace Relay.Bench.Load;

/// <summary>
/// The publishing window: at most <see cref="Window"/> messages published and not yet acknowledged. In fan-out an
/// acknowledgement is the probe subscriber's delivery (the last subscriber of each channel), so a server is never
/// offered more than it can deliver and queues stay bounded for every peer alike.
/// </summary>
internal sealed class Pacer(int window)
{
    private readonly SemaphoreSlim _wake = new(0);
    private long _published;
    private long _acknowledged;
    private int _waiting;

    public int Window { get; } = window;

    public long Published => Volatile.Read(ref _published);

    public long Acknowledged => Volatile.Read(ref _acknowledged);

    /// <summary>How many more messages may be published now.</summary>
    public int Room => (int)Math.Max(0, Window - (Published - Acknowledged));

    public void OnPublished(int count) => Interlocked.Add(ref _published, count);

    public void OnAcknowledged(long count = 1)
    {
        Interlocked.Add(ref _acknowledged, count);
        if (Volatile.Read(ref _waiting) == 1 && Interlocked.Exchange(ref _waiting, 0) == 1)
        {
            _wake.Release();
        }
    }

    /// <summary>Waits until there is room in the window (or a short timeout, so the caller can check its deadline).</summary>
    public async Task WaitForRoomAsync()
    {
        if (Room > 0)
        {
            return;
        }

        Volatile.Write(ref _waiting, 1);
        if (Room > 0)
        {
            Volatile.Write(ref _waiting, 0);
            return;
        }

        await _wake.WaitAsync(TimeSpan.FromMilliseconds(200)).ConfigureAwait(false);
    }
}
