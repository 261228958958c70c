namespace Relay.Auth.Tests;

/// <summary>A clock that moves only when a test says so.</summary>
internal sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    /// <summary>A start far from the real date, so anything that reads the system clock instead shows up.</summary>
    public static readonly DateTimeOffset DefaultStart = new(2031, 3, 4, 5, 6, 7, TimeSpan.Zero);

    private long _utcTicks = start.UtcTicks;

    public ManualClock()
        : this(DefaultStart)
    {
    }

    public override DateTimeOffset GetUtcNow() => new(Interlocked.Read(ref _utcTicks), TimeSpan.Zero);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _utcTicks, by.Ticks);
}
