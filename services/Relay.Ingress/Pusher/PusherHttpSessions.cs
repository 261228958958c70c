using System.Collections.Concurrent;

namespace Relay.Ingress.Pusher;

/// <summary>
/// The node's HTTP fallback sessions by <c>{key}/{server}/{session}</c>, the path pusher-js names them by. A session
/// lives on the node that opened it: behind a load balancer, its requests must reach that node (see docs/pusher.md).
/// </summary>
internal sealed class PusherHttpSessions
{
    private readonly ConcurrentDictionary<string, PusherHttpSession> _sessions = new(StringComparer.Ordinal);

    public PusherHttpSession? Find(string id) => _sessions.TryGetValue(id, out var session) ? session : null;

    /// <summary>Adds <paramref name="session"/>, or returns the one another request added first under its id.</summary>
    public PusherHttpSession GetOrAdd(PusherHttpSession session) => _sessions.GetOrAdd(session.Id, session);

    public void Remove(PusherHttpSession session) =>
        _sessions.TryRemove(new KeyValuePair<string, PusherHttpSession>(session.Id, session));
}
