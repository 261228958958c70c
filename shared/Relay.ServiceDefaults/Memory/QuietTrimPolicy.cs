namespace Relay.ServiceDefaults.Memory;

/// <summary>
/// Decides, from one sample per second of the process's total allocated bytes, when a trim is due: enough was
/// allocated since the last trim, and the last <c>quietSeconds</c> allocated at most the quiet rate. Under load the
/// rate stays high and nothing is trimmed; an idle process allocates too little to be trimmed again.
/// </summary>
internal sealed class QuietTrimPolicy
{
    private readonly long _trimAfterBytes;
    private readonly long _quietBytes;
    private readonly long[] _samples;
    private int _count;
    private long _sinceTrimStart;

    public QuietTrimPolicy(MemoryOptions options, long allocatedNow)
    {
        _trimAfterBytes = (long)options.TrimAfterMiB * 1024 * 1024;
        _quietBytes = (long)options.QuietKiBPerSecond * 1024 * options.QuietSeconds;
        _samples = new long[options.QuietSeconds + 1];
        _sinceTrimStart = allocatedNow;
        Record(allocatedNow);
    }

    /// <summary>Takes this second's sample; true when a trim is due now.</summary>
    public bool Sample(long allocatedNow)
    {
        Record(allocatedNow);
        if (_count < _samples.Length || allocatedNow - _sinceTrimStart < _trimAfterBytes)
        {
            return false;
        }

        var oldest = _samples[_count % _samples.Length];
        return allocatedNow - oldest <= _quietBytes;
    }

    /// <summary>After a trim: allocations count from here.</summary>
    public void Trimmed(long allocatedNow) => _sinceTrimStart = allocatedNow;

    private void Record(long allocated)
    {
        _samples[_count % _samples.Length] = allocated;
        _count++;
    }
}
