using System.Text;
using Relay.Bench.Load;

namespace Relay.Bench.Targets;

/// <summary>
/// One system the harness measures: how to start it, and the bytes its WebSocket protocol uses to say hello,
/// subscribe and publish. Everything else (sockets, counting, pacing, timing) is the same code for every target.
/// </summary>
internal abstract class Target
{
    public abstract string Name { get; }

    /// <summary>The ready, acknowledgement and error tokens of the protocol.</summary>
    public abstract ProtocolTokens Tokens { get; }

    /// <summary>Whether a publish request is answered one by one (false: a whole burst is confirmed by a ping).</summary>
    public virtual bool AcksEachPublish => true;

    /// <summary>Starts a fresh server for one scenario run.</summary>
    public abstract Task<RunningTarget> StartAsync(BenchEnvironment environment);

    /// <summary>After the upgrade: waits for the greeting and completes the protocol's own handshake.</summary>
    public abstract Task HandshakeAsync(BenchSocket socket);

    /// <summary>Subscribes to <paramref name="channel"/> and waits until the server confirms it.</summary>
    public abstract Task SubscribeAsync(BenchSocket socket, string channel);

    /// <summary>One publish of a payload of <paramref name="payloadSize"/> bytes, with the offset where its stamp goes.</summary>
    public abstract PublishTemplate PublishTemplate(string channel, int payloadSize, bool wantAck);

    /// <summary>The frame that confirms everything published before it, for protocols without per-publish acks.</summary>
    public virtual byte[]? BurstTerminator => null;

    /// <summary>
    /// The target whose protocol the publishing connections speak, at <see cref="RunningTarget.PublishUri"/>: itself, or
    /// for a protocol whose clients do not publish to public channels (Pusher: only the server does) the same server's own.
    /// </summary>
    public virtual Target Publisher => this;

    protected static async Task RequestAsync(BenchSocket socket, string frame, long acksBefore, int acks, string what)
    {
        await socket.SendTextAsync(Encoding.UTF8.GetBytes(frame)).ConfigureAwait(false);
        await socket.Scanner.WaitAsync(() => socket.Scanner.Acks >= acksBefore + acks, BenchEnvironment.RequestTimeout, what).ConfigureAwait(false);
    }

    /// <summary>Starts an ASP.NET Core program of this repository's Release build on a free loopback port.</summary>
    protected static async Task<(ServerProcess Server, int Port)> StartDotnetAsync(string name, BenchEnvironment environment, string dll, IReadOnlyDictionary<string, string> settings)
    {
        var path = environment.RepoPath(dll);
        var port = ServerProcess.FreePort();
        var server = await ServerProcess.StartAsync(name, "dotnet", [path, "--urls", $"http://127.0.0.1:{port}"], settings, port, environment.LogDirectory).ConfigureAwait(false);
        return (server, port);
    }

    protected static PublishTemplate Template(string before, int payloadSize, string after)
    {
        var head = Encoding.UTF8.GetBytes(before);
        var tail = Encoding.UTF8.GetBytes(after);
        var bytes = new byte[head.Length + payloadSize + tail.Length];
        head.CopyTo(bytes, 0);
        Stamp.Write(bytes.AsSpan(head.Length), payloadSize, 0);
        tail.CopyTo(bytes, head.Length + payloadSize);
        return new PublishTemplate(bytes, head.Length);
    }
}

/// <summary>A publish frame with a stamp at <see cref="StampOffset"/>, rewritten with the send time for each message.</summary>
internal sealed record PublishTemplate(byte[] Bytes, int StampOffset);

/// <summary>
/// A started target: its process (whose CPU and memory are measured), the WebSocket address clients connect to, a
/// process it needs (Redis for <c>relay-redis</c>; not measured), and the other services of a target run as separate
/// processes (routing and fan-out for <c>relay-redis-fanout1</c>/<c>2</c>; each one's CPU reported on its own), all
/// stopped after it.
/// </summary>
internal sealed record RunningTarget(ServerProcess Server, Uri WebSocketUri, Uri? HttpBase, ServerProcess? Companion = null) : IAsyncDisposable
{
    public IReadOnlyList<ServerProcess> Services { get; init; } = [];

    /// <summary>Where publishing connections connect, when not at <see cref="WebSocketUri"/> (<see cref="Target.Publisher"/>).</summary>
    public Uri? PublisherWebSocketUri { get; init; }

    public Uri PublishUri => PublisherWebSocketUri ?? WebSocketUri;

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync().ConfigureAwait(false);
        foreach (var service in Services)
        {
            await service.DisposeAsync().ConfigureAwait(false);
        }

        if (Companion is not null)
        {
            await Companion.DisposeAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>
/// Relay's standalone host, from this repository's Release build: over the in-memory bus (<c>relay</c>), or over the
/// Redis bus with a redis-server of its own (<c>relay-redis</c>: every hop through Redis, as between processes). With
/// <paramref name="fanOutProcesses"/>, the services as separate processes over the Redis bus instead
/// (<c>relay-redis-fanout1</c>, <c>relay-redis-fanout2</c>): one ingress node (the measured server, keeping its own
/// keys), one routing instance and that many fan-out processes, which share the fan-out shards.
/// </summary>
internal sealed class RelayTarget(bool redisBus = false, int fanOutProcesses = 0, IReadOnlyDictionary<string, string>? extraSettings = null) : Target
{
    public const string AppKey = "bench.root:bench-secret-0123456789";

    public override string Name => fanOutProcesses > 0 ? $"relay-redis-fanout{fanOutProcesses}" : redisBus ? "relay-redis" : "relay";

    public override ProtocolTokens Tokens { get; } = new("\"type\":\"connected\""u8.ToArray(), "\"type\":\"ok\""u8.ToArray(), "\"type\":\"error\""u8.ToArray());

    /// <summary>The standalone host's settings as every Relay target runs it (the bench app and key, limits out of the way).</summary>
    public static Dictionary<string, string> Settings() => new()
    {
        ["ASPNETCORE_ENVIRONMENT"] = "Production",
        ["Logging__LogLevel__Default"] = "Warning",
        ["Relay__Auth__Apps__0__Id"] = "bench",
        ["Relay__Auth__Apps__0__Keys__0__Id"] = "root",
        ["Relay__Auth__Apps__0__Keys__0__Secret"] = "bench-secret-0123456789",
        ["Relay__Auth__Apps__0__Keys__0__Capabilities__0__Channel"] = "*",
        ["Relay__Auth__Apps__0__Keys__0__Capabilities__0__Operations__0"] = "*",
        // The harness measures the server, not its per-connection publish limit.
        ["Relay__Ingress__PublishRatePerSecond"] = "1000000",
        ["Relay__Ingress__PublishBurst"] = "1000000",
        // The same send budget per client as NATS (64 MB pending) rather than Relay's 16 MiB: a hiccup of the
        // load generator on these two cores once cut the harness's own subscriber (when the limit was 1,024 frames).
        ["Relay__Ingress__SendQueueBytes"] = "67108864",

        // The soak's channels (namespace soak) keep 1 minute of history instead of 5: recovery needs only the second a
        // reconnect takes, and retained history reaches its steady size in the first fifth of a 5-minute run, so
        // the memory trend after that is what connections and churn leave behind (see SoakScenario).
        ["Relay__Namespaces__Rules__soak__HistoryTtl"] = "00:01:00",

        // MQTT off the default port: the machine may run mosquitto on 1883 (the MQTT targets give it a free one).
        ["Relay__Mqtt__Port"] = "0",
        ["Relay__Grpc__Port"] = "0",
    };

    public override async Task<RunningTarget> StartAsync(BenchEnvironment environment)
    {
        var settings = Settings();
        foreach (var (name, value) in extraSettings ?? new Dictionary<string, string>())
        {
            settings[name] = value;
        }

        ServerProcess? redis = null;
        if (redisBus || fanOutProcesses > 0)
        {
            var redisPort = ServerProcess.FreePort();
            var binary = BenchEnvironment.FindExecutable("redis-server", "apt-get install redis-server");
            redis = await ServerProcess.StartAsync("redis", binary, ["--bind", "127.0.0.1", "--port", redisPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--save", "", "--appendonly", "no"], new Dictionary<string, string>(), redisPort, environment.LogDirectory).ConfigureAwait(false);
            settings["Relay__Bus"] = "redis";
            settings["Relay__Redis__Configuration"] = $"127.0.0.1:{redisPort}";
        }

        var services = new List<ServerProcess>();
        try
        {
            var host = "services/Relay.Standalone/bin/Release/net10.0/Relay.Standalone.dll";
            if (fanOutProcesses > 0)
            {
                host = "services/Relay.Ingress/bin/Release/net10.0/Relay.Ingress.dll";
                services.Add((await StartDotnetAsync("routing", environment, "services/Relay.Routing/bin/Release/net10.0/Relay.Routing.dll", settings).ConfigureAwait(false)).Server);
                for (var i = 1; i <= fanOutProcesses; i++)
                {
                    services.Add((await StartDotnetAsync($"fanout-{i}", environment, "services/Relay.FanOut/bin/Release/net10.0/Relay.FanOut.dll", settings).ConfigureAwait(false)).Server);
                }
            }

            var (server, port) = await StartDotnetAsync(Name, environment, host, settings).ConfigureAwait(false);
            var key = Uri.EscapeDataString(AppKey);
            return new RunningTarget(server, new Uri($"ws://127.0.0.1:{port}/v1/realtime?key={key}"), new Uri($"http://127.0.0.1:{port}/"), redis) { Services = services };
        }
        catch
        {
            foreach (var service in services)
            {
                await service.DisposeAsync().ConfigureAwait(false);
            }

            if (redis is not null)
            {
                await redis.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    public override Task HandshakeAsync(BenchSocket socket) =>
        socket.Scanner.WaitAsync(() => socket.Scanner.Readies >= 1, BenchEnvironment.RequestTimeout, "the connection (connected frame)");

    public override Task SubscribeAsync(BenchSocket socket, string channel) =>
        RequestAsync(socket, $"{{\"type\":\"subscribe\",\"channel\":\"{channel}\",\"ref\":1}}", socket.Scanner.Acks, 1, $"subscribe {channel}");

    public override PublishTemplate PublishTemplate(string channel, int payloadSize, bool wantAck) =>
        Template($"{{\"type\":\"publish\",\"channel\":\"{channel}\",\"data\":\"", payloadSize, "\",\"ref\":1}");
}

/// <summary>nats-server (Debian) with its WebSocket listener: the fastest broker a team would reach for.</summary>
internal sealed class NatsTarget : Target
{
    public override string Name => "nats";

    public override ProtocolTokens Tokens { get; } = new("INFO "u8.ToArray(), "PONG\r\n"u8.ToArray(), "-ERR"u8.ToArray());

    public override bool AcksEachPublish => false;

    public override byte[] BurstTerminator => "PING\r\n"u8.ToArray();

    public override async Task<RunningTarget> StartAsync(BenchEnvironment environment)
    {
        var binary = BenchEnvironment.FindExecutable("nats-server", "apt-get install nats-server");
        var port = ServerProcess.FreePort();
        var webSocketPort = ServerProcess.FreePort();
        var config = Path.Combine(environment.LogDirectory, $"nats-{webSocketPort}.conf");
        Directory.CreateDirectory(environment.LogDirectory);
        await File.WriteAllTextAsync(config, $$"""
            listen: "127.0.0.1:{{port}}"
            max_payload: 65536
            # Idle benchmark clients stay quiet for minutes; keep-alive pings are not what is measured.
            ping_interval: "10m"
            websocket {
              listen: "127.0.0.1:{{webSocketPort}}"
              no_tls: true
              compression: false
            }
            """).ConfigureAwait(false);
        var server = await ServerProcess.StartAsync("nats", binary, ["-c", config], new Dictionary<string, string>(), webSocketPort, environment.LogDirectory).ConfigureAwait(false);
        return new RunningTarget(server, new Uri($"ws://127.0.0.1:{webSocketPort}/"), null);
    }

    public override async Task HandshakeAsync(BenchSocket socket)
    {
        await socket.Scanner.WaitAsync(() => socket.Scanner.Readies >= 1, BenchEnvironment.RequestTimeout, "the connection (INFO)").ConfigureAwait(false);
        await RequestAsync(socket, "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\nPING\r\n", socket.Scanner.Acks, 1, "CONNECT").ConfigureAwait(false);
    }

    public override Task SubscribeAsync(BenchSocket socket, string channel) =>
        RequestAsync(socket, $"SUB {channel} 1\r\nPING\r\n", socket.Scanner.Acks, 1, $"SUB {channel}");

    public override PublishTemplate PublishTemplate(string channel, int payloadSize, bool wantAck) =>
        Template($"PUB {channel} {payloadSize}\r\n", payloadSize, "\r\n");
}

/// <summary>An ASP.NET Core SignalR hub (tests/Relay.Bench/peers/SignalRPeer): the .NET default.</summary>
internal sealed class SignalRTarget : Target
{
    private const char RecordSeparator = '\u001e';

    public override string Name => "signalr";

    public override ProtocolTokens Tokens { get; } = new("{}\u001e"u8.ToArray(), "\"type\":3"u8.ToArray(), "\"error\":"u8.ToArray());

    public override async Task<RunningTarget> StartAsync(BenchEnvironment environment)
    {
        var settings = new Dictionary<string, string> { ["ASPNETCORE_ENVIRONMENT"] = "Production" };
        var (server, port) = await StartDotnetAsync("signalr", environment, "tests/Relay.Bench/peers/SignalRPeer/bin/Release/net10.0/SignalRPeer.dll", settings).ConfigureAwait(false);
        return new RunningTarget(server, new Uri($"ws://127.0.0.1:{port}/hub"), null);
    }

    public override async Task HandshakeAsync(BenchSocket socket)
    {
        // Straight to the WebSocket transport, as the JavaScript client's skipNegotiation does.
        await socket.SendTextAsync(Encoding.UTF8.GetBytes("{\"protocol\":\"json\",\"version\":1}" + RecordSeparator)).ConfigureAwait(false);
        await socket.Scanner.WaitAsync(() => socket.Scanner.Readies >= 1, BenchEnvironment.RequestTimeout, "the SignalR handshake").ConfigureAwait(false);
    }

    public override Task SubscribeAsync(BenchSocket socket, string channel) =>
        RequestAsync(socket, $"{{\"type\":1,\"invocationId\":\"s\",\"target\":\"Subscribe\",\"arguments\":[\"{channel}\"]}}{RecordSeparator}", socket.Scanner.Acks, 1, $"Subscribe {channel}");

    public override PublishTemplate PublishTemplate(string channel, int payloadSize, bool wantAck) =>
        Template(
            wantAck ? $"{{\"type\":1,\"invocationId\":\"p\",\"target\":\"Publish\",\"arguments\":[\"{channel}\",\"" : $"{{\"type\":1,\"target\":\"Publish\",\"arguments\":[\"{channel}\",\"",
            payloadSize,
            "\"]}" + RecordSeparator);
}
