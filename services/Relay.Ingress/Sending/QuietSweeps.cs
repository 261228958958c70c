namespace Relay.Ingress.Sending;

/// <summary>
/// Counts the node's once-a-second sweeps in a row that found a connection's buffer unused, so the buffer goes back
/// after a quiet spell rather than whenever a sweep happens to find it idle (a connection between two bursts looks
/// idle too). Used under its owner's lock; a mutable struct, so keep it in a field, never a copy.
/// </summary>
internal struct QuietSweeps
{
    private bool _used;
    private int _quiet;

    /// <summary>The buffer was used since the last sweep.</summary>
    public void Used() => _used = true;

    /// <summary>One sweep: true once the buffer went unused, and was not <paramref name="busy"/>, for <paramref name="needed"/> sweeps in a row.</summary>
    public bool Sweep(bool busy, int needed)
    {
        _quiet = _used || busy ? 0 : _quiet + 1;
        _used = false;
        return _quiet >= needed;
    }
}
