namespace Relay.Bus.Sessions;

/// <summary>
/// The in-memory bus's will store (<c>AddRelayBus()</c>): one process, whose death takes every connection and its will
/// with it, so nothing is kept; every connection's node publishes its own will.
/// </summary>
public sealed class InMemoryWillStore : IWillStore
{
    /// <inheritdoc />
    public bool Durable => false;

    /// <inheritdoc />
    public ValueTask<string> RegisterAsync(string scope, string app, string clientId, ReadOnlyMemory<byte> will, TimeSpan delay, CancellationToken cancellationToken) =>
        ValueTask.FromResult(string.Empty);

    /// <inheritdoc />
    public ValueTask<WillRelease> ReleaseAsync(string scope, string app, string clientId, string token, CancellationToken cancellationToken) =>
        ValueTask.FromResult(WillRelease.Removed);

    /// <inheritdoc />
    public IDisposable WatchOrphans(Func<ReadOnlyMemory<byte>, Task> publish) => Stopper.Instance;

    private sealed class Stopper : IDisposable
    {
        public static readonly Stopper Instance = new();

        public void Dispose()
        {
        }
    }
}
