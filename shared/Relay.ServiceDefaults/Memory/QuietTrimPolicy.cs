namespace Relay.ServiceDefaults.Memory;

/// <summary>
/// Decides, from one sample per second of the process's total allocated bytes and CPU time, when a trim is due:
/// enough was allocated since the last trim, and over the last <c>quietSeconds</c> the process allocated at most the
/// quiet rate and used at most the quiet share of a core. Under load (even allocation-free load, like a fan-out)
/// nothing is trimmed; an idle process allocates too little to be trimmed again.
/// </summary>
internal sealed class QuietTrimPolicy
{
    private readonly long _trimAfterBytes;
    private readonly long _quietBytes;
    private readonly TimeSpan _quietCpu;
    private readonly (long Allocated, TimeSpan Cpu)[] _samples;
    private int _count;
    private long _sinceTrimStart;

    public QuietTrimPolicy(MemoryOptions options, long allocatedNow, TimeSpan cpuNow)
    {
        _trimAfterBytes = (long)options.TrimAfterMiB * 1024 * 1024;
        _quietBytes = (long)options.QuietKiBPerSecond * 1024 * options.QuietSeconds;
        _quietCpu = TimeSpan.FromSeconds(options.QuietSeconds * options.QuietCpuPercent / 100.0);
        _samples = new (long, TimeSpan)[options.QuietSeconds + 1];
        _sinceTrimStart = allocatedNow;
        Record(allocatedNow, cpuNow);
    }

    /// <summary>Takes this second's sample; true when a trim is due now.</summary>
    public bool Sample(long allocatedNow, TimeSpan cpuNow)
    {
        Record(allocatedNow, cpuNow);
        if (_count < _samples.Length || allocatedNow - _sinceTrimStart < _trimAfterBytes)
        {
            return false;
        }

        var (oldestAllocated, oldestCpu) = _samples[_count % _samples.Length];
        return allocatedNow - oldestAllocated <= _quietBytes && cpuNow - oldestCpu <= _quietCpu;
    }

    /// <summary>After a trim: allocations count from here.</summary>
    public void Trimmed(long allocatedNow) => _sinceTrimStart = allocatedNow;

    private void Record(long allocated, TimeSpan cpu)
    {
        _samples[_count % _samples.Length] = (allocated, cpu);
        _count++;
    }
}
