namespace Relay.Pusher;

/// <summary>Options of the Pusher Channels protocol (WebSocket at <c>/app/{key}</c>, HTTP API at <c>/apps/{app_id}</c>), bound from <c>Relay:Pusher</c>.</summary>
public sealed class PusherOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Pusher";

    /// <summary>Default activity timeout: Pusher's own 120 s, which pusher-js uses as told; a quiet client is pinged after it.</summary>
    public const int DefaultActivityTimeoutSeconds = 120;

    /// <summary>Default wait for an answer to the server's ping: pusher-js answers at once; 30 s covers a phone waking up.</summary>
    public const int DefaultPongTimeoutSeconds = 30;

    /// <summary>Default largest event data: Pusher's 10 KB, so an app that fits Pusher fits Relay.</summary>
    public const int DefaultMaxEventBytes = 10 * 1024;

    /// <summary>Default channels one HTTP event may name: Pusher's 100.</summary>
    public const int DefaultMaxChannelsPerEvent = 100;

    /// <summary>Default events in one batch_events request: Pusher's 10.</summary>
    public const int DefaultMaxBatchEvents = 10;

    /// <summary>Default tolerance of an HTTP request's auth_timestamp: Pusher's 600 s either way.</summary>
    public const int DefaultTimestampToleranceSeconds = 600;

    /// <summary>Default client events per second per connection: Pusher's 10, so a client that fits Pusher fits Relay.</summary>
    public const int DefaultClientEventsPerSecond = 10;

    /// <summary>Default wait for a webhook receiver's answer: long enough for a slow app server, short enough to retry soon.</summary>
    public const int DefaultWebhookTimeoutSeconds = 10;

    /// <summary>Default tries of one webhook batch (1 s, 2 s, 4 s, 8 s apart): a receiver restarting within ~15 s loses nothing.</summary>
    public const int DefaultWebhookMaxAttempts = 5;

    /// <summary>Default events a receiver's queue holds: a minute of a busy app's occupancy churn; past it new events are dropped.</summary>
    public const int DefaultWebhookQueueCapacity = 10_000;

    /// <summary>Default longest wait of an <c>xhr_polling</c> poll, and the heartbeat of an <c>xhr_streaming</c> stream: SockJS's 25 s, under proxies' usual 30-60 s idle cut.</summary>
    public const int DefaultHttpPollSeconds = 25;

    /// <summary>
    /// Default life of an HTTP fallback session with no stream or poll open: SockJS's <c>disconnect_delay</c>, 5 s.
    /// pusher-js opens the next stream or poll milliseconds after the last ends, and its <c>disconnect()</c> on HTTP only
    /// aborts the request, so this is how long a closed client's presence membership outlives it.
    /// </summary>
    public const int DefaultHttpSessionTimeoutSeconds = 5;

    /// <summary>Whether the node speaks the Pusher protocol.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Seconds of client silence after which the server sends <c>pusher:ping</c> (told to clients as <c>activity_timeout</c>).</summary>
    public int ActivityTimeoutSeconds { get; set; } = DefaultActivityTimeoutSeconds;

    /// <summary>Seconds the server waits for any frame after its <c>pusher:ping</c> before it closes with 4201.</summary>
    public int PongTimeoutSeconds { get; set; } = DefaultPongTimeoutSeconds;

    /// <summary>
    /// The largest event data in bytes, the UTF-8 of its string (client events and HTTP API events); larger ones are refused
    /// (4301 / 413). An event is one Relay message, so <c>Relay:Ingress:MaxMessageBytes</c> caps it when smaller.
    /// </summary>
    public int MaxEventBytes { get; set; } = DefaultMaxEventBytes;

    /// <summary>The most channels one HTTP API event may name.</summary>
    public int MaxChannelsPerEvent { get; set; } = DefaultMaxChannelsPerEvent;

    /// <summary>The most events one <c>batch_events</c> request may carry.</summary>
    public int MaxBatchEvents { get; set; } = DefaultMaxBatchEvents;

    /// <summary>How far an HTTP API request's <c>auth_timestamp</c> may be from the server's clock, in seconds.</summary>
    public int TimestampToleranceSeconds { get; set; } = DefaultTimestampToleranceSeconds;

    /// <summary>Client events one connection may send per second (a burst of as many); over it: <c>pusher:error</c> 4301.</summary>
    public int ClientEventsPerSecond { get; set; } = DefaultClientEventsPerSecond;

    /// <summary>Seconds a webhook receiver has to answer one POST before it counts as failed.</summary>
    public int WebhookTimeoutSeconds { get; set; } = DefaultWebhookTimeoutSeconds;

    /// <summary>Tries of one webhook batch before it is dropped (logged as a dead letter).</summary>
    public int WebhookMaxAttempts { get; set; } = DefaultWebhookMaxAttempts;

    /// <summary>Events waiting for one receiver at most; a full queue drops new events (logged).</summary>
    public int WebhookQueueCapacity { get; set; } = DefaultWebhookQueueCapacity;

    /// <summary>
    /// Seconds an <c>xhr_polling</c> poll waits for something to send before it answers a heartbeat (<c>h</c>); also how
    /// often an <c>xhr_streaming</c> stream with nothing to send writes one (pusher-js counts it as activity).
    /// </summary>
    public int HttpPollSeconds { get; set; } = DefaultHttpPollSeconds;

    /// <summary>Seconds an HTTP fallback session (<c>xhr_streaming</c>, <c>xhr_polling</c>) lives with no stream or poll open, counted from the end of the last one; then it is closed as its client is gone.</summary>
    public int HttpSessionTimeoutSeconds { get; set; } = DefaultHttpSessionTimeoutSeconds;

    /// <summary>Per-app settings by app id: quota, disable, webhooks (<c>Relay:Pusher:Apps:{appId}</c>).</summary>
    public Dictionary<string, PusherAppOptions> Apps { get; } = new(StringComparer.Ordinal);
}
