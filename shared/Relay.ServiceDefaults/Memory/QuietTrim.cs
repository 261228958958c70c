using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Relay.ServiceDefaults.Memory;

/// <summary>
/// Gives memory back after a burst. The .NET GC collects only when something allocates, so a server that goes idle
/// after a connection storm keeps the storm's garbage (and the heap room it took) until traffic returns. Once a second
/// this checks the allocation counter and the process's CPU time (<see cref="QuietTrimPolicy"/>); when the process has
/// gone quiet (little allocated, little CPU used) after at least
/// <see cref="MemoryOptions.TrimAfterMiB"/> of allocations it runs one aggressive, compacting collection, which also
/// decommits the free heap. Never under load; one pause per burst. Metric: <c>relay_memory_trims_total</c>.
/// </summary>
internal sealed partial class QuietTrim(IOptions<MemoryOptions> options, IMeterFactory meters, ILogger<QuietTrim> logger) : BackgroundService
{
    private readonly Counter<long> _trims = meters.Create("Relay.Memory").CreateCounter<long>("relay.memory.trims", description: "Compacting collections run after the process went quiet following a burst of allocations");

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        if (!settings.TrimWhenQuiet)
        {
            return;
        }

        var policy = new QuietTrimPolicy(settings, GC.GetTotalAllocatedBytes(), Environment.CpuUsage.TotalTime);
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                if (!policy.Sample(GC.GetTotalAllocatedBytes(), Environment.CpuUsage.TotalTime))
                {
                    continue;
                }

                var before = Environment.WorkingSet;
                var started = Stopwatch.GetTimestamp();
                GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
                policy.Trimmed(GC.GetTotalAllocatedBytes());
                _trims.Add(1);
                LogTrimmed(logger, Stopwatch.GetElapsedTime(started).TotalMilliseconds, (before - Environment.WorkingSet) / (1024 * 1024));
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    [LoggerMessage(EventId = 900, Level = LogLevel.Debug, Message = "Quiet after a burst: trimmed the heap in {Milliseconds:F1} ms, working set down {MiB} MiB")]
    private static partial void LogTrimmed(ILogger logger, double milliseconds, long miB);
}
