using System.Globalization;

namespace Relay.Client;

/// <summary>How a <see cref="RelayClient"/> connects, authenticates and recovers.</summary>
/// <remarks>
/// Give exactly one kind of credential: a <see cref="Key"/> (server-side code only: the secret must never
/// reach a browser or a phone), or a <see cref="Token"/> and/or a <see cref="TokenProvider"/>.
/// </remarks>
public sealed class RelayClientOptions
{
    /// <summary>The default <see cref="MinReconnectDelay"/>: quick enough that a blip is barely noticed.</summary>
    public static readonly TimeSpan DefaultMinReconnectDelay = TimeSpan.FromMilliseconds(250);

    /// <summary>The default <see cref="MaxReconnectDelay"/>: caps the backoff so an outage is noticed within half a minute of its end.</summary>
    public static readonly TimeSpan DefaultMaxReconnectDelay = TimeSpan.FromSeconds(30);

    /// <summary>The default <see cref="RequestTimeout"/>.</summary>
    public static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The default <see cref="SubscriptionBufferCapacity"/>: about a second of a busy channel.</summary>
    public const int DefaultSubscriptionBufferCapacity = 1024;

    /// <summary>
    /// The server: either the WebSocket endpoint (<c>ws://host:port/v1/realtime</c>, <c>wss://…</c>) or the HTTP
    /// base address (<c>http://host:port/</c>, <c>https://…</c>), to which <c>/v1/realtime</c> is added.
    /// </summary>
    public required Uri Endpoint { get; set; }

    /// <summary>
    /// Other nodes of the same deployment (same forms as <see cref="Endpoint"/>). A reconnect that fails moves on to
    /// the next address, round-robin, so a client whose node died resumes, with recovery, on another.
    /// </summary>
    public IList<Uri> FallbackEndpoints { get; } = [];

    /// <summary>An API key, <c>APPID.KEYID:SECRET</c>, sent as <c>?key=</c>. For trusted server-side code only.</summary>
    public string? Key { get; set; }

    /// <summary>A JWT sent as <c>?token=</c>. With a <see cref="TokenProvider"/> too, it is used for the first connection only.</summary>
    public string? Token { get; set; }

    /// <summary>
    /// Returns a fresh token. Called before the first connection when <see cref="Token"/> is not set, before every
    /// reconnection, and shortly before the current token expires (the new one is sent in-band as an <c>auth</c> request).
    /// </summary>
    public Func<CancellationToken, ValueTask<string>>? TokenProvider { get; set; }

    /// <summary>With a <see cref="Key"/>, the client id to connect as (<c>?clientId=</c>). A token names its client itself (<c>sub</c>).</summary>
    public string? ClientId { get; set; }

    /// <summary>The first delay before reconnecting after a drop; later attempts back off exponentially, with jitter.</summary>
    public TimeSpan MinReconnectDelay { get; set; } = DefaultMinReconnectDelay;

    /// <summary>The longest delay between two reconnection attempts.</summary>
    public TimeSpan MaxReconnectDelay { get; set; } = DefaultMaxReconnectDelay;

    /// <summary>How long a request (connect, publish, subscribe…) waits for the server's reply before failing with <see cref="TimeoutException"/>.</summary>
    public TimeSpan RequestTimeout { get; set; } = DefaultRequestTimeout;

    /// <summary>
    /// How many messages each subscription buffers for <see cref="RelaySubscription.ReadAllAsync"/>. When the buffer
    /// is full the oldest buffered message is dropped (and counted in <see cref="RelaySubscription.DroppedMessages"/>):
    /// a reader that falls behind never stalls the connection or other subscriptions.
    /// </summary>
    public int SubscriptionBufferCapacity { get; set; } = DefaultSubscriptionBufferCapacity;

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Endpoint, nameof(Endpoint));
        foreach (var fallback in FallbackEndpoints)
        {
            if (fallback is null || !fallback.IsAbsoluteUri || fallback.Scheme is not ("ws" or "wss" or "http" or "https"))
            {
                throw new ArgumentException($"FallbackEndpoints entry '{fallback}' must be an absolute ws://, wss://, http:// or https:// URI.", nameof(FallbackEndpoints));
            }
        }

        if (!Endpoint.IsAbsoluteUri || Endpoint.Scheme is not ("ws" or "wss" or "http" or "https"))
        {
            throw new ArgumentException("Endpoint must be an absolute ws://, wss://, http:// or https:// URI, e.g. ws://localhost:8080/v1/realtime.", nameof(Endpoint));
        }

        var hasKey = !string.IsNullOrEmpty(Key);
        var hasToken = !string.IsNullOrEmpty(Token) || TokenProvider is not null;
        if (hasKey == hasToken)
        {
            throw new ArgumentException("Set either Key (server-side code) or Token/TokenProvider, not both and not neither.");
        }

        if (MinReconnectDelay <= TimeSpan.Zero || MaxReconnectDelay < MinReconnectDelay)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"Reconnect delays must satisfy 0 < MinReconnectDelay ({MinReconnectDelay}) <= MaxReconnectDelay ({MaxReconnectDelay})."));
        }

        if (RequestTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("RequestTimeout must be positive.", nameof(RequestTimeout));
        }

        if (SubscriptionBufferCapacity < 1)
        {
            throw new ArgumentException("SubscriptionBufferCapacity must be at least 1.", nameof(SubscriptionBufferCapacity));
        }
    }

    /// <summary><see cref="Endpoint"/> then <see cref="FallbackEndpoints"/>, as WebSocket endpoints (see <see cref="RealtimeEndpoint(Uri)"/>).</summary>
    internal Uri[] RealtimeEndpoints() => [RealtimeEndpoint(Endpoint), .. FallbackEndpoints.Select(RealtimeEndpoint)];

    /// <summary>The WebSocket endpoint without credentials: http(s) becomes ws(s), and <c>/v1/realtime</c> is added to a base address.</summary>
    internal static Uri RealtimeEndpoint(Uri endpoint)
    {
        var builder = new UriBuilder(endpoint)
        {
            Scheme = endpoint.Scheme switch { "http" => "ws", "https" => "wss", _ => endpoint.Scheme },
        };
        if (builder.Uri.IsDefaultPort)
        {
            builder.Port = -1;
        }

        var path = builder.Path.TrimEnd('/');
        if (!path.EndsWith("/v1/realtime", StringComparison.Ordinal))
        {
            builder.Path = path + "/v1/realtime";
        }

        return builder.Uri;
    }
}
