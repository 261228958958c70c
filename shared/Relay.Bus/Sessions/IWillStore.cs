namespace Relay.Bus.Sessions;

/// <summary>
/// Where the last wills of the connections live across ingress nodes (MQTT's), per client id, so that the wills of a
/// node that dies (SIGKILL, a crash, a lost VM) are published by another node. A node records each connection's will
/// (<see cref="RegisterAsync"/>) and removes it when the connection ends (<see cref="ReleaseAsync"/>); every node beats,
/// and takes the wills of nodes whose beat stopped, each will once (<see cref="WatchOrphans"/>). The in-memory bus keeps
/// nothing (<see cref="InMemoryWillStore"/>: one process, whose death takes every connection with it); the Redis bus
/// (and the Dapr bus that keeps its state there) keeps them in Redis.
/// </summary>
public interface IWillStore
{
    /// <summary>Whether another process can take the wills written here (false: nothing is written, every call is a no-op).</summary>
    bool Durable { get; }

    /// <summary>
    /// Records <paramref name="will"/> (opaque bytes; empty: the connection has no will another node may publish) as the
    /// client id's, replacing whatever another connection of it recorded, on any node: a dead node's will never fires
    /// after its client connected again. A will with a <paramref name="delay"/> (MQTT 5 Will Delay) taken from a dead node
    /// is due that long after the node's last beat, and is cancelled by a later connection of the client id until then.
    /// Returns the entry's token, for <see cref="ReleaseAsync"/>.
    /// </summary>
    ValueTask<string> RegisterAsync(string scope, string app, string clientId, ReadOnlyMemory<byte> will, TimeSpan delay, CancellationToken cancellationToken);

    /// <summary>
    /// Removes the entry of <paramref name="token"/> (its connection ended) and tells who publishes its will:
    /// <see cref="WillRelease.Gone"/> when another node took it already (this node was presumed dead).
    /// </summary>
    ValueTask<WillRelease> ReleaseAsync(string scope, string app, string clientId, string token, CancellationToken cancellationToken);

    /// <summary>
    /// Starts this node's beat and sweep: each will of a node whose beat stopped is taken once, across every node, and
    /// handed to <paramref name="publish"/> (a delayed one once due, by the node that took it, or by another if that one
    /// dies too). Disposing stops it.
    /// </summary>
    IDisposable WatchOrphans(Func<ReadOnlyMemory<byte>, Task> publish);
}

/// <summary>What <see cref="IWillStore.ReleaseAsync"/> found.</summary>
public enum WillRelease
{
    /// <summary>The entry was this connection's and is gone now: its node publishes the will, if due.</summary>
    Removed,

    /// <summary>A later connection of the client id replaced it (a takeover): its node still publishes the will, if due.</summary>
    Replaced,

    /// <summary>Another node took it as a dead node's (this one's beat stopped a while): not to be published here.</summary>
    Gone,
}
