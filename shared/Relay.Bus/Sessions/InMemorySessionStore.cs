namespace Relay.Bus.Sessions;

/// <summary>
/// Persistent sessions in this process (the in-memory bus's, <c>AddRelayBus()</c>): one node, so this only keeps the
/// rules every store follows; a restart forgets them. Expired entries are swept at most every <see cref="SweepEvery"/>.
/// </summary>
public sealed class InMemorySessionStore(TimeProvider time) : ISessionStore
{
    /// <summary>How often, at most, expired entries are swept (on a call): often enough to bound what expired ones hold.</summary>
    private static readonly TimeSpan SweepEvery = TimeSpan.FromSeconds(10);

    private readonly Dictionary<(string Scope, string App, string ClientId), Entry> _entries = [];
    private DateTimeOffset _nextSweep;

    /// <inheritdoc />
    public ValueTask<SessionTake> TakeAsync(string scope, string app, string clientId, long claim, bool discard, bool force, bool hold, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var key = (scope, app, clientId);
        lock (_entries)
        {
            var now = Now();
            var found = Live(key, now);
            if (found is { } existing && existing.Claim > claim)
            {
                return ValueTask.FromResult(new SessionTake(SessionTakeOutcome.Later, default));
            }

            if (discard)
            {
                if (hold || found is not null)
                {
                    _entries[key] = new Entry(claim, 0, hold, ReadOnlyMemory<byte>.Empty, now + ttl);
                }

                return ValueTask.FromResult(new SessionTake(SessionTakeOutcome.Taken, default));
            }

            if (found is { Held: true } held && held.Claim < claim && !force)
            {
                return ValueTask.FromResult(new SessionTake(SessionTakeOutcome.Held, default));
            }

            var state = found?.State ?? ReadOnlyMemory<byte>.Empty;
            _entries[key] = new Entry(claim, 0, hold, state, now + ttl);
            return ValueTask.FromResult(new SessionTake(SessionTakeOutcome.Taken, state));
        }
    }

    /// <inheritdoc />
    public ValueTask<bool> SaveAsync(string scope, string app, string clientId, long claim, long version, bool held, ReadOnlyMemory<byte> state, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var key = (scope, app, clientId);
        lock (_entries)
        {
            var now = Now();
            if (Live(key, now) is { } existing && (existing.Claim > claim || (existing.Claim == claim && existing.Version >= version)))
            {
                return ValueTask.FromResult(false);
            }

            _entries[key] = new Entry(claim, version, held, state.ToArray(), now + ttl);
            return ValueTask.FromResult(true);
        }
    }

    /// <inheritdoc />
    public bool Durable => false;

    /// <inheritdoc />
    /// <remarks>Nothing here outlives the process (<see cref="Durable"/> is false): the broker keeps receipts in its connections instead; the id given is the id kept.</remarks>
    public ValueTask<string> ReceiveAsync(string scope, string app, string clientId, long claim, ushort packetId, string messageId, TimeSpan ttl, CancellationToken cancellationToken) =>
        ValueTask.FromResult(messageId);

    /// <inheritdoc />
    public ValueTask<bool> ReleaseAsync(string scope, string app, string clientId, ushort packetId, CancellationToken cancellationToken) =>
        ValueTask.FromResult(false);

    /// <inheritdoc />
    public ValueTask DeleteAsync(string scope, string app, string clientId, long claim, CancellationToken cancellationToken)
    {
        var key = (scope, app, clientId);
        lock (_entries)
        {
            if (Live(key, Now()) is { } existing && existing.Claim <= claim)
            {
                _entries.Remove(key);
            }
        }

        return ValueTask.CompletedTask;
    }

    // The entry unless it expired (then it is gone); the caller holds the lock.
    private Entry? Live((string, string, string) key, DateTimeOffset now)
    {
        if (!_entries.TryGetValue(key, out var entry))
        {
            return null;
        }

        if (entry.ExpiresAt > now)
        {
            return entry;
        }

        _entries.Remove(key);
        return null;
    }

    // The time, after sweeping expired entries when one is due; the caller holds the lock.
    private DateTimeOffset Now()
    {
        var now = time.GetUtcNow();
        if (now >= _nextSweep)
        {
            _nextSweep = now + SweepEvery;
            foreach (var (key, entry) in _entries)
            {
                if (entry.ExpiresAt <= now)
                {
                    _entries.Remove(key);
                }
            }
        }

        return now;
    }

    private sealed record Entry(long Claim, long Version, bool Held, ReadOnlyMemory<byte> State, DateTimeOffset ExpiresAt);
}
