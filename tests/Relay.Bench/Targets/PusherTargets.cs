using Relay.Bench.Load;

namespace Relay.Bench.Targets;

/// <summary>
/// Relay's standalone host with its subscribers on the Pusher Channels protocol (<c>/app/{key}?protocol=7</c>, the
/// endpoint pusher-js and Laravel Echo use): each connection waits for <c>pusher:connection_established</c> and
/// subscribes to a public channel (<c>pusher_internal:subscription_succeeded</c>). Pusher clients cannot publish to public
/// channels (only the server does, through the HTTP API, and client events need a private channel and are limited to 10
/// a second), so the publishers speak Relay's own protocol to the same process (<see cref="Publisher"/>): the figures are
/// the Pusher delivery path (encoding, the Pusher frame, its connections), the publish path being Relay's. soketi, the
/// peer issue 15 names, does not install here (docs/benchmarks.md, Pusher).
/// </summary>
internal sealed class RelayPusherTarget : Target
{
    // The server pings a client silent for activity_timeout and closes it 4201 without an answer: the harness's idle and
    // subscribed connections send nothing, so the longest activity timeout (an hour) keeps them through any run.
    private static readonly Dictionary<string, string> s_settings = new()
    {
        ["Relay__Pusher__ActivityTimeoutSeconds"] = "3600",
        ["Relay__Pusher__PongTimeoutSeconds"] = "600",
    };

    private readonly RelayTarget _relay = new(extraSettings: s_settings);

    public override string Name => "relay-pusher";

    public override ProtocolTokens Tokens { get; } = new(
        "pusher:connection_established"u8.ToArray(),
        "pusher_internal:subscription_succeeded"u8.ToArray(),
        "\"event\":\"pusher:error\""u8.ToArray());

    public override Target Publisher => _relay;

    public override async Task<RunningTarget> StartAsync(BenchEnvironment environment)
    {
        var running = await _relay.StartAsync(environment).ConfigureAwait(false);
        var key = Uri.EscapeDataString(RelayTarget.AppKey.Split(':')[0]);
        var pusher = new Uri($"ws://127.0.0.1:{running.WebSocketUri.Port}/app/{key}?protocol=7&client=relay-bench&version=8.4.0");
        return running with { WebSocketUri = pusher, PublisherWebSocketUri = running.WebSocketUri };
    }

    public override Task HandshakeAsync(BenchSocket socket) =>
        socket.Scanner.WaitAsync(() => socket.Scanner.Readies >= 1, BenchEnvironment.RequestTimeout, "the connection (pusher:connection_established)");

    public override Task SubscribeAsync(BenchSocket socket, string channel) =>
        RequestAsync(socket, $"{{\"event\":\"pusher:subscribe\",\"data\":{{\"channel\":\"{channel}\"}}}}", socket.Scanner.Acks, 1, $"pusher:subscribe {channel}");

    public override PublishTemplate PublishTemplate(string channel, int payloadSize, bool wantAck) =>
        throw new NotSupportedException("Pusher clients publish to public channels only through the server: relay-pusher's publishers speak Relay's protocol (Publisher)");
}
