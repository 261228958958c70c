using System.Globalization;
using Relay.Bench.Scenarios;
using Relay.Bench.Targets;

namespace Relay.Bench;

/// <summary>The harness's command line: scenarios to run, targets to run them on, and their sizes.</summary>
internal sealed class BenchOptions
{
    public static readonly string[] AllScenarios = ["fanout", "latency", "channels", "publish-ws", "many-publishers", "publish-http", "idle"];

    /// <summary>Scenarios run only when named: the soak takes minutes.</summary>
    public static readonly string[] NamedOnlyScenarios = ["soak"];

    public List<string> Scenarios { get; } = [];

    public List<string> Targets { get; } = ["relay", "nats", "signalr"];

    public int Subscribers { get; set; } = 10_000;

    public int Channels { get; set; } = 1_000;

    public int PerChannel { get; set; } = 3;

    public int LatencySubscribers { get; set; } = 100;

    /// <summary>publish-ws runs once per subscriber count here: one publisher's cost alone, then with a small fan-out.</summary>
    public List<int> PublishSubscribers { get; } = [1, 10, 100];

    /// <summary>many-publishers: a chat, game or telemetry shape, many clients each publishing to a few channels.</summary>
    public int Publishers { get; set; } = 100;

    /// <summary>many-publishers: each publisher's unacknowledged publishes (a client with a few messages on the way).</summary>
    public int PublisherWindow { get; set; } = 8;

    public int Rate { get; set; } = 1_000;

    public int Window { get; set; } = 64;

    public int Payload { get; set; } = 100;

    public TimeSpan Warmup { get; set; } = TimeSpan.FromSeconds(3);

    public TimeSpan Duration { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>0: as many as the file-descriptor limit allows.</summary>
    public int IdleConnections { get; set; }

    public int IdlePerProcess { get; set; } = 10_000;

    /// <summary>soak: connections held (0: 19,000, or the file-descriptor limit less 1,000 where that is lower).</summary>
    public int SoakConnections { get; set; }

    public int SoakPerProcess { get; set; } = 10_000;

    public double SoakMinutes { get; set; } = 5;

    /// <summary>soak: connections closed and resumed each second (0: 1% of the connections).</summary>
    public double SoakChurn { get; set; }

    public int SoakChannels { get; set; } = 1_000;

    public int SoakRate { get; set; } = 300;

    public double SoakFlatMiBPerMinute { get; set; } = SoakSpec.DefaultFlatMiBPerMinute;

    public TimeSpan SoakSampleEvery { get; set; } = TimeSpan.FromSeconds(10);

    public string? MarkdownPath { get; set; }

    public string? JsonPath { get; set; }

    /// <summary>The named section of the markdown file to write (<c>mqtt</c> for the MQTT run); none: the main one.</summary>
    public string? Section { get; set; }

    public static string Usage => """
        Relay.Bench: Relay and its peers (NATS over WebSocket, ASP.NET Core SignalR) under the same load, in one run.

        usage: dotnet tests/Relay.Bench/bin/Release/net10.0/Relay.Bench.dll [scenario ...] [options]
          scenarios: fanout latency channels publish-ws many-publishers publish-http idle (default: all); soak (only when named)
          --targets relay,nats,signalr   which systems to measure (default: these three; also relay-redis: Relay over its Redis bus;
                                         relay-redis-fanout1, relay-redis-fanout2: ingress, routing and 1 or 2 fan-out processes;
                                         relay-mqtt, mosquitto: MQTT 3.1.1 over TCP, QoS 0;
                                         relay-pusher: subscribers on the Pusher protocol, publishers on Relay's)
          --subscribers N      fanout: subscribers of the one channel (10000)
          --channels C         channels, many-publishers: how many channels (1000)
          --per-channel K      channels, many-publishers: subscribers per channel (3)
          --latency-subscribers N   latency: subscribers (100)
          --publish-subscribers L   publish-ws: subscriber counts to run, comma-separated (1,10,100)
          --publishers P       many-publishers: publishers, each publishing to channels/P of the channels (100)
          --publisher-window W many-publishers: each publisher's unacknowledged publishes (8)
          --rate R             latency: publishes per second (1000)
          --window W           unacknowledged messages the publisher may have in flight (64)
          --payload B          payload bytes (100)
          --warmup S --duration S   seconds of warm-up and of measurement (3, 10)
          --idle-connections N idle: connections (default: the file-descriptor limit less 1000)
          --idle-per-process N idle: connections per client process (10000)
          --soak-connections N soak: connections held (19000, or the file-descriptor limit less 1000 where lower)
          --soak-per-process N soak: connections per client process (10000)
          --soak-minutes M     soak: how long the churn and the publishing last (5)
          --soak-churn C       soak: connections closed (half cleanly, half reset) and resumed with since each second (1% of the connections)
          --soak-channels C    soak: channels the connections subscribe to, round-robin (1000)
          --soak-rate R        soak: acknowledged publishes per second, round-robin over the channels (300)
          --soak-flat X        soak: MiB a minute under which RSS and heap count as flat (2)
          --markdown PATH      write the figures into PATH between the bench markers (docs/benchmarks.md; the soak between its own)
          --json PATH          write the raw results as JSON
          --section NAME       write into the markers of section NAME instead of the main one (the MQTT run: mqtt)
          --quick              small sizes, for a smoke run

        usage: dotnet tests/Relay.Bench/bin/Release/net10.0/Relay.Bench.dll socket-floor [--connections N]
          what a .NET process's RSS grows by per idle loopback connection it holds as a bare descriptor, a SafeSocketHandle
          or a Socket (N: 18000, or the file-descriptor limit less 1000 where lower); printed only
        """;

    /// <summary>
    /// What to run, in order: each result's scenario name, its description for the report, and the run's spec for a
    /// target (null: the idle scenario). publish-ws becomes one run per subscriber count (publish-ws-1, publish-ws-10, …).
    /// </summary>
    public IEnumerable<(string Scenario, string Description, Func<Target, FanOutSpec?> SpecOf)> Runs()
    {
        var transport = Targets.All(static t => t is "relay-mqtt" or "mosquitto") ? "MQTT (QoS 0, TCP)" : "WebSocket";
        foreach (var scenario in Scenarios)
        {
            switch (scenario)
            {
                case "fanout":
                    yield return (scenario, $"{Subscribers:N0} {transport} subscribers of one channel, one publisher as fast as a window of {Window} allows, {Payload}-byte payloads",
                        _ => new FanOutSpec(scenario, 1, Subscribers, 0, Window, Payload, Warmup, Duration));
                    break;
                case "latency":
                    yield return (scenario, $"{Rate:N0} msgs/s to {LatencySubscribers:N0} subscribers of one channel, {Payload}-byte payloads",
                        _ => new FanOutSpec(scenario, 1, LatencySubscribers, Rate, Window, Payload, Warmup, Duration));
                    break;
                case "channels":
                    yield return (scenario, $"{Channels:N0} channels with {PerChannel} subscribers each, one publisher round-robin, window {Window}",
                        _ => new FanOutSpec(scenario, Channels, PerChannel, 0, Window, Payload, Warmup, Duration));
                    break;
                case "publish-ws":
                    foreach (var subscribers in PublishSubscribers)
                    {
                        var name = $"publish-ws-{subscribers}";
                        yield return (name, $"one {transport} publisher, window of {Window} unacknowledged publishes, {subscribers:N0} subscriber{(subscribers == 1 ? string.Empty : "s")} of its channel, {Payload}-byte payloads",
                            _ => new FanOutSpec(name, 1, subscribers, 0, Window, Payload, Warmup, Duration, PublishPacing.AckWindow));
                    }

                    break;
                case "many-publishers":
                    yield return (scenario, $"{Channels:N0} channels with {PerChannel} subscribers each, {Publishers:N0} {transport} publishers (each round-robin over {Channels / Publishers:N0} channels, window of {PublisherWindow} unacknowledged publishes), {Payload}-byte payloads",
                        _ => new FanOutSpec(scenario, Channels, PerChannel, 0, PublisherWindow, Payload, Warmup, Duration, PublishPacing.AckWindow, Publishers: Publishers));
                    break;
                case "publish-http":
                    yield return (scenario, $"POST /v1/channels/{{channel}}/messages with {Window} requests in flight, one WebSocket subscriber (the peers have no HTTP publish)",
                        _ => new FanOutSpec(scenario, 1, 1, 0, Window, Payload, Warmup, Duration, PublishPacing.AckWindow, OverHttp: true));
                    break;
                case "soak":
                    yield return (scenario, "subscribed connections held for minutes with churn and a steady publish load", _ => null);
                    break;
                default:
                    yield return (scenario, $"idle subscribed {transport} connections (each on its own channel), {IdlePerProcess:N0} per client process", _ => null);
                    break;
            }
        }
    }

    public static BenchOptions Parse(string[] args)
    {
        var options = new BenchOptions();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int() => int.TryParse(Next(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= 0 ? value : throw new ArgumentException($"{args[i - 1]} needs a whole number, not '{args[i]}'");
            double Number() => double.TryParse(Next(), NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value >= 0 ? value : throw new ArgumentException($"{args[i - 1]} needs a number of 0 or more, not '{args[i]}'");
            switch (args[i])
            {
                case "--targets":
                    options.Targets.Clear();
                    options.Targets.AddRange(Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
                    break;
                case "--subscribers": options.Subscribers = Int(); break;
                case "--channels": options.Channels = Int(); break;
                case "--per-channel": options.PerChannel = Int(); break;
                case "--latency-subscribers": options.LatencySubscribers = Int(); break;
                case "--publish-subscribers":
                    options.PublishSubscribers.Clear();
                    foreach (var count in Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    {
                        options.PublishSubscribers.Add(int.TryParse(count, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= 1 ? value : throw new ArgumentException($"--publish-subscribers needs whole numbers from 1, comma-separated, not '{count}'"));
                    }

                    break;
                case "--publishers": options.Publishers = Int(); break;
                case "--publisher-window": options.PublisherWindow = Int(); break;
                case "--rate": options.Rate = Int(); break;
                case "--window": options.Window = Int(); break;
                case "--payload": options.Payload = Int(); break;
                case "--warmup": options.Warmup = TimeSpan.FromSeconds(Int()); break;
                case "--duration": options.Duration = TimeSpan.FromSeconds(Int()); break;
                case "--idle-connections": options.IdleConnections = Int(); break;
                case "--idle-per-process": options.IdlePerProcess = Int(); break;
                case "--soak-connections": options.SoakConnections = Int(); break;
                case "--soak-per-process": options.SoakPerProcess = Int(); break;
                case "--soak-minutes": options.SoakMinutes = Number(); break;
                case "--soak-churn": options.SoakChurn = Number(); break;
                case "--soak-channels": options.SoakChannels = Int(); break;
                case "--soak-rate": options.SoakRate = Int(); break;
                case "--soak-flat": options.SoakFlatMiBPerMinute = Number(); break;
                case "--markdown": options.MarkdownPath = Next(); break;
                case "--json": options.JsonPath = Next(); break;
                case "--section": options.Section = Next(); break;
                case "--quick":
                    options.Subscribers = 200;
                    options.Channels = 20;
                    options.LatencySubscribers = 20;
                    options.Publishers = 10;
                    options.Warmup = TimeSpan.FromSeconds(1);
                    options.Duration = TimeSpan.FromSeconds(2);
                    options.IdleConnections = 500;
                    options.IdlePerProcess = 250;
                    options.SoakConnections = 300;
                    options.SoakPerProcess = 150;
                    options.SoakMinutes = 0.5;
                    options.SoakChannels = 20;
                    options.SoakRate = 50;
                    options.SoakSampleEvery = TimeSpan.FromSeconds(2);
                    break;
                case var scenario when AllScenarios.Contains(scenario) || NamedOnlyScenarios.Contains(scenario):
                    options.Scenarios.Add(scenario);
                    break;
                default:
                    throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }

        if (options.Scenarios.Count == 0)
        {
            options.Scenarios.AddRange(AllScenarios);
        }

        if (options.Payload < Load.Stamp.MinimumSize)
        {
            throw new ArgumentException($"--payload must be at least {Load.Stamp.MinimumSize} bytes (the stamp)");
        }

        if (options.Window < 1 || options.PublisherWindow < 1)
        {
            throw new ArgumentException("--window and --publisher-window must be at least 1");
        }

        if (options.PublishSubscribers.Count == 0)
        {
            throw new ArgumentException("--publish-subscribers needs at least one count");
        }

        if (options.Scenarios.Contains("many-publishers") && (options.Publishers < 1 || options.Publishers > options.Channels))
        {
            throw new ArgumentException($"--publishers must be 1 to --channels ({options.Channels}): each publisher needs a channel of its own");
        }

        if (options.SoakPerProcess < 1 || options.SoakChannels < 1 || options.SoakMinutes <= 0)
        {
            throw new ArgumentException("--soak-per-process, --soak-channels and --soak-minutes must be above 0");
        }

        return options;
    }

    /// <summary>The soak run's sizes, with the defaults that depend on the machine filled in.</summary>
    public SoakSpec Soak(int openFilesLimit)
    {
        var connections = SoakConnections > 0 ? SoakConnections : Math.Min(19_000, openFilesLimit - 1_000);
        return new SoakSpec(
            connections,
            SoakPerProcess,
            TimeSpan.FromMinutes(SoakMinutes),
            SoakChurn > 0 ? SoakChurn : connections / 100.0,
            SoakChannels,
            SoakRate,
            Payload,
            SoakSampleEvery,
            SoakFlatMiBPerMinute);
    }
}
