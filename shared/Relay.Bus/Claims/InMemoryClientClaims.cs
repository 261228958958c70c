namespace Relay.Bus.Claims;

/// <summary>
/// The in-memory bus's claims: one process, so no claim is ever made elsewhere (the node's own takeover covers its
/// connections); the numbers still increase, as everywhere.
/// </summary>
public sealed class InMemoryClientClaims : IClientClaims
{
    private long _last;

    /// <inheritdoc />
    public ValueTask<long> ClaimAsync(string scope, string app, string clientId, bool endsSession, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Interlocked.Increment(ref _last));

    /// <inheritdoc />
    public IDisposable Watch(Action<ClientClaim> claimedElsewhere) => NoWatch.Instance;

    private sealed class NoWatch : IDisposable
    {
        public static readonly NoWatch Instance = new();

        public void Dispose()
        {
        }
    }
}
