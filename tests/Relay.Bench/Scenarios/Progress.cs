using System.Diagnostics;

namespace Relay.Bench.Scenarios;

/// <summary>One line of progress at most every second, so a long run shows it is alive without flooding the terminal.</summary>
internal sealed class Progress(string prefix)
{
    private readonly Stopwatch _since = Stopwatch.StartNew();
    private long _lastPrintMs = -1000;

    public void Say(string message) => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {prefix}: {message}");

    public void Count(string what, long done, long total)
    {
        var now = _since.ElapsedMilliseconds;
        var last = Interlocked.Read(ref _lastPrintMs);
        if ((now - last >= 1000 || done == total) && Interlocked.CompareExchange(ref _lastPrintMs, now, last) == last)
        {
            Say($"{what} {done:N0}/{total:N0}");
        }
    }
}
