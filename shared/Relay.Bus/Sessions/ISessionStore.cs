namespace Relay.Bus.Sessions;

/// <summary>
/// Where persistent sessions (MQTT's) are kept between ingress nodes, per client id: the state the node holding the
/// session last wrote (opaque bytes: for MQTT its subscriptions and, per channel, the last seq it was given, so another
/// node recovers what it missed from history), the claim (<see cref="Claims.IClientClaims"/>) of the connection whose
/// node holds it, and whether that node still keeps it live. Every entry expires with the session (its time to live is
/// set on each write). The in-memory bus keeps them in the process (<see cref="InMemorySessionStore"/>), the Redis bus
/// (and the Dapr bus that keeps its state there) in Redis.
/// </summary>
/// <remarks>
/// A hand-off loses and duplicates nothing when the node that held the session writes its final state with
/// <c>held: false</c> before a later claim takes it: the taker waits while an earlier claim's node still holds it.
/// Writes are ordered by (claim, version): one from an earlier claim, or an earlier version of the same claim, changes
/// nothing.
/// </remarks>
public interface ISessionStore
{
    /// <summary>
    /// Takes the session of <paramref name="clientId"/> for the connection of <paramref name="claim"/>. Unless
    /// <paramref name="discard"/>, its state is returned (<see cref="SessionTakeOutcome.Taken"/>, empty when there is
    /// none) and from now on the entry names <paramref name="claim"/> as holder, with <paramref name="hold"/> and
    /// <paramref name="ttl"/> — or, while a node holding it for an earlier claim has not released it and
    /// <paramref name="force"/> is false, nothing changes (<see cref="SessionTakeOutcome.Held"/>: ask again). With
    /// <paramref name="discard"/> the stored state is dropped at once (a clean start), whoever holds it: with
    /// <paramref name="hold"/> the entry names the new session's holder, without it an entry that exists is left as an
    /// empty one for <paramref name="ttl"/>, so a late write of the old holder cannot bring it back.
    /// <see cref="SessionTakeOutcome.Later"/>: a later claim holds it already; nothing changed.
    /// </summary>
    ValueTask<SessionTake> TakeAsync(string scope, string app, string clientId, long claim, bool discard, bool force, bool hold, TimeSpan ttl, CancellationToken cancellationToken);

    /// <summary>
    /// Writes the session's <paramref name="state"/> for the holder of <paramref name="claim"/> (its
    /// <paramref name="version"/>-th write), <paramref name="held"/> while its node keeps it live, expiring after
    /// <paramref name="ttl"/>; false (nothing written) when a later claim, or a later version of this one, wrote first.
    /// </summary>
    ValueTask<bool> SaveAsync(string scope, string app, string clientId, long claim, long version, bool held, ReadOnlyMemory<byte> state, TimeSpan ttl, CancellationToken cancellationToken);

    /// <summary>Deletes the session (it ended) unless a claim later than <paramref name="claim"/> holds it; its receipts (below) go too.</summary>
    ValueTask DeleteAsync(string scope, string app, string clientId, long claim, CancellationToken cancellationToken);

    /// <summary>
    /// Whether what is written here outlives the process (the Redis store: another node reads it after this one dies).
    /// When false, nothing is gained by writing a receipt (below) per message: the process's own memory is as durable.
    /// </summary>
    bool Durable { get; }

    /// <summary>
    /// Records that the client's exactly-once publish <paramref name="packetId"/> (MQTT QoS 2) was received, with
    /// <paramref name="messageId"/> as its idempotency id, unless it is recorded already; returns the id recorded (the
    /// first copy's, for a resend), so a resend on any node is routed with the same id and not published twice. Kept for
    /// <paramref name="ttl"/> (from this write) or until <see cref="ReleaseAsync"/>; a clean start (a take with discard) and
    /// <see cref="DeleteAsync"/> drop every receipt of the session. Nothing is written while a claim later than
    /// <paramref name="claim"/> holds the session (a connection taken over: its late write must not outlive a clean start).
    /// </summary>
    ValueTask<string> ReceiveAsync(string scope, string app, string clientId, long claim, ushort packetId, string messageId, TimeSpan ttl, CancellationToken cancellationToken);

    /// <summary>Forgets the receipt of <paramref name="packetId"/> (the client released it: MQTT PUBREL); whether there was one.</summary>
    ValueTask<bool> ReleaseAsync(string scope, string app, string clientId, ushort packetId, CancellationToken cancellationToken);
}

/// <summary>What <see cref="ISessionStore.TakeAsync"/> found: the outcome and, once taken, the state (empty: none).</summary>
public readonly record struct SessionTake(SessionTakeOutcome Outcome, ReadOnlyMemory<byte> State);

/// <summary>What <see cref="ISessionStore.TakeAsync"/> did.</summary>
public enum SessionTakeOutcome
{
    /// <summary>The session is this claim's now; its state (empty: there was none) came back.</summary>
    Taken,

    /// <summary>A node holding it for an earlier claim has not released it yet; nothing changed.</summary>
    Held,

    /// <summary>A later claim holds it; nothing changed.</summary>
    Later,
}
