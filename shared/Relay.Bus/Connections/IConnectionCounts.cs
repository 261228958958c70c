namespace Relay.Bus.Connections;

/// <summary>
/// Each app's client connections counted across every ingress node of the deployment, for a limit that holds for the
/// whole cluster (<c>Relay:Ingress:AppLimits:…:MaxClusterConnections</c>). The in-memory bus counts in the process
/// (<see cref="InMemoryConnectionCounts"/>: one node); the Redis bus, and the Dapr bus that keeps its state there, in
/// Redis, where a node that dies stops counting within a bound (<see cref="Scope"/> says which).
/// </summary>
/// <remarks>
/// One call per connection opened (one round trip in Redis) and one, not awaited, per connection closed; none per message.
/// </remarks>
public interface IConnectionCounts
{
    /// <summary>Where the counts are kept and how a dead node's count is dropped, in words, for the start-up log.</summary>
    string Scope { get; }

    /// <summary>
    /// Counts one connection of <paramref name="app"/> in when the app holds fewer than <paramref name="max"/> across
    /// every node (<see cref="ConnectionCount.Counted"/>), or not (<see cref="ConnectionCount.Full"/>), atomically: two
    /// nodes opening the last place at once admit one. <see cref="ConnectionCount.Unavailable"/> when the counts cannot
    /// be reached; with <paramref name="admitWhenUnavailable"/> the connection is then counted on this node and added to
    /// the shared count once it can be reached again.
    /// </summary>
    ValueTask<ConnectionCount> TryAddAsync(string app, int max, bool admitWhenUnavailable, CancellationToken cancellationToken);

    /// <summary>A connection counted in (<see cref="ConnectionCount.Counted"/>, or admitted while unavailable) ended. Does not wait.</summary>
    void Remove(string app);
}

/// <summary>What <see cref="IConnectionCounts.TryAddAsync"/> found.</summary>
public enum ConnectionCount
{
    /// <summary>Counted in: the app was below its limit.</summary>
    Counted,

    /// <summary>Not counted: the app holds its limit across the nodes.</summary>
    Full,

    /// <summary>The counts could not be reached (counted on this node only when the caller admits it).</summary>
    Unavailable,
}
