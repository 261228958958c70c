using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Relay.Bus.Connections;

/// <summary>
/// The in-memory bus's connection counts: one process, so one node, and the count across the cluster is this node's.
/// Never unavailable.
/// </summary>
public sealed class InMemoryConnectionCounts : IConnectionCounts
{
    private readonly ConcurrentDictionary<string, StrongBox<int>> _apps = new(StringComparer.Ordinal);

    /// <inheritdoc />
    public string Scope => "in this process (the in-memory bus: one node)";

    /// <inheritdoc />
    public ValueTask<ConnectionCount> TryAddAsync(string app, int max, bool admitWhenUnavailable, CancellationToken cancellationToken)
    {
        var count = _apps.GetOrAdd(app, static _ => new StrongBox<int>());
        if (Interlocked.Increment(ref count.Value) <= max)
        {
            return ValueTask.FromResult(ConnectionCount.Counted);
        }

        Interlocked.Decrement(ref count.Value);
        return ValueTask.FromResult(ConnectionCount.Full);
    }

    /// <inheritdoc />
    public void Remove(string app)
    {
        if (_apps.TryGetValue(app, out var count))
        {
            Interlocked.Decrement(ref count.Value);
        }
    }
}
