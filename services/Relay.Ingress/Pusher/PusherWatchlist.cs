using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Pusher;

/// <summary>
/// A signed-in connection's watchlist (Pusher's watchlist events, with <c>Relay:Pusher:Apps:{app}:Watchlists</c>): the
/// users named in its <c>user_data.watchlist</c>, each watched through the presence of that user's Relay channel
/// (<c>server-to-user-{id}</c>), which every signed-in connection of the app enters. So a user is online while any of
/// its connections, on any node, is in that presence (a node that dies takes its members with it; presence events are
/// per user: enter for the first connection, leave when the last goes), and this
/// connection is told <c>pusher_internal:watchlist_events</c> with <c>online</c> when one of its watched users goes
/// from no connection to one, and <c>offline</c> when the last one goes; first, once every watch stands, the watched
/// users online then (nothing when none is).
/// </summary>
internal sealed class PusherWatchlist
{
    /// <summary>The most users one watchlist watches (Pusher's limit); the rest are ignored.</summary>
    public const int MaxUsers = 100;

    /// <summary>The connection-level frame pusher-js hands to <c>pusher.user.watchlist</c>.</summary>
    public const string EventName = "pusher_internal:watchlist_events";

    private readonly Action<byte[]> _send;
    private readonly HashSet<string> _watched = new(StringComparer.Ordinal);
    private readonly HashSet<string> _online = new(StringComparer.Ordinal);
    private readonly List<Subscription> _subscriptions = [];
    private bool _started;

    private PusherWatchlist(Action<byte[]> send) => _send = send;

    /// <summary>
    /// Watches <paramref name="users"/> of <paramref name="app"/> for a connection that sends its frames with
    /// <paramref name="send"/>: subscribes to each user's channel, reads who is in its presence, and sends the first
    /// <c>online</c> event.
    /// </summary>
    public static async Task<PusherWatchlist> StartAsync(IngressNode node, string app, IReadOnlyList<string> users, Action<byte[]> send)
    {
        var watchlist = new PusherWatchlist(send);
        foreach (var user in users)
        {
            lock (watchlist._watched)
            {
                watchlist._watched.Add(user);
            }

            var subscription = await node.StartSubscriptionAsync(new Watch(watchlist, user), app, PusherChannels.RelayUserPrefix + user, null, null, null, static (_, _, _) => { }).ConfigureAwait(false);
            lock (watchlist._watched)
            {
                watchlist._subscriptions.Add(subscription);
            }
        }

        // Who is present now, every watched user's presence read at once (an event that came meanwhile already counted
        // its user); then changes are told.
        var present = await Task.WhenAll(users.Select(async user =>
            await node.Bus.SendToRoutingAsync(new PresenceGetRequest(app, PusherChannels.RelayUserPrefix + user), node.Stopping).ConfigureAwait(false) is PresenceReply { Members.Count: > 0 })).ConfigureAwait(false);
        lock (watchlist._watched)
        {
            for (var i = 0; i < users.Count; i++)
            {
                if (present[i])
                {
                    watchlist._online.Add(users[i]);
                }
            }
        }

        List<string> online;
        lock (watchlist._watched)
        {
            watchlist._started = true;
            online = [.. users.Where(watchlist._online.Contains)];
        }

        if (online.Count > 0)
        {
            send(Frame("online", online));
        }

        return watchlist;
    }

    /// <summary>The users of a <c>user_data</c> object's <c>watchlist</c> (strings or numbers, once each, at most <see cref="MaxUsers"/>).</summary>
    public static List<string> UsersOf(System.Text.Json.JsonElement userData)
    {
        var users = new List<string>();
        if (userData.ValueKind == System.Text.Json.JsonValueKind.Object && userData.TryGetProperty("watchlist"u8, out var list) && list.ValueKind == System.Text.Json.JsonValueKind.Array)
        {
            foreach (var item in list.EnumerateArray())
            {
                var id = item.ValueKind switch
                {
                    System.Text.Json.JsonValueKind.String => item.GetString(),
                    System.Text.Json.JsonValueKind.Number => item.GetRawText(),
                    _ => null,
                };
                if (!string.IsNullOrEmpty(id) && id.Length <= 128 && !users.Contains(id) && Relay.Core.Channels.ChannelName.IsValidName(PusherChannels.RelayUserPrefix + id, out _))
                {
                    users.Add(id);
                    if (users.Count == MaxUsers)
                    {
                        break;
                    }
                }
            }
        }

        return users;
    }

    /// <summary>Ends every watch.</summary>
    public async Task StopAsync(IngressNode node)
    {
        Subscription[] subscriptions;
        lock (_watched)
        {
            subscriptions = [.. _subscriptions];
            _subscriptions.Clear();
            _started = false;
        }

        foreach (var subscription in subscriptions)
        {
            await node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
        }
    }

    private static byte[] Frame(string name, IReadOnlyList<string> users) =>
        PusherFrames.Event(EventName, null, (name, users), static (w, state) =>
        {
            w.WriteStartArray("events"u8);
            w.WriteStartObject();
            w.WriteString("name"u8, state.name);
            w.WriteStartArray("user_ids"u8);
            foreach (var user in state.users)
            {
                w.WriteStringValue(user);
            }

            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndArray();
        });

    // A presence event of a watched user's channel. Relay's presence events are per client id (the user): enter for its
    // first connection, update for each other, leave when its last one goes; so enter and update mean online.
    private void OnPresence(string user, RelayMessage message)
    {
        string? told = null;
        lock (_watched)
        {
            if (!_watched.Contains(user))
            {
                return;
            }

            var changed = message.PresenceAction == "leave" ? _online.Remove(user) : _online.Add(user);
            if (_started && changed)
            {
                told = message.PresenceAction == "leave" ? "offline" : "online";
            }
        }

        if (told is not null)
        {
            _send(Frame(told, [user]));
        }
    }

    // Only presence events count: the user's own messages on its channel (server-to-user events, terminate) are not the watcher's.
    private sealed class Watch(PusherWatchlist watchlist, string user) : IMessageSink
    {
        public void Send(RelayMessage message)
        {
            if (message.PresenceAction is not null)
            {
                watchlist.OnPresence(user, message);
            }
        }

        public void Lost(Subscription subscription)
        {
        }
    }
}
