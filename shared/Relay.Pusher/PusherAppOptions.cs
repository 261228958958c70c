namespace Relay.Pusher;

/// <summary>What one app's Pusher side may do beyond its keys: <c>Relay:Pusher:Apps:{appId}</c>.</summary>
public sealed class PusherAppOptions
{
    /// <summary>Whether the app's Pusher clients are served; a disabled app's connections are refused with 4003.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>The most Pusher connections of the app on one node; past it a new one is refused with 4004. 0: no quota.</summary>
    public int MaxConnections { get; set; }

    /// <summary>
    /// Watchlist events (Pusher's app toggle, off by default): a signed-in connection's <c>user_data.watchlist</c> users
    /// are watched, and it is told when they come online and go offline (<see cref="PusherWatchlist"/>).
    /// </summary>
    public bool Watchlists { get; set; }

    /// <summary>The key (<c>APPID.KEYID</c>) whose name is sent as <c>X-Pusher-Key</c> and whose secret signs the webhooks.</summary>
    public string? WebhookKey { get; set; }

    /// <summary>Where the app's webhooks go.</summary>
    public List<PusherWebhookOptions> Webhooks { get; } = [];
}
