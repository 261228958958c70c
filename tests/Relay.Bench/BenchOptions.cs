using System.Globalization;

namespace Relay.Bench;

/// <summary>The harness's command line: scenarios to run, targets to run them on, and their sizes.</summary>
internal sealed class BenchOptions
{
    public static readonly string[] AllScenarios = ["fanout", "latency", "channels", "publish-ws", "publish-http", "idle"];

    public List<string> Scenarios { get; } = [];

    public List<string> Targets { get; } = ["relay", "nats", "signalr"];

    public int Subscribers { get; set; } = 10_000;

    public int Channels { get; set; } = 1_000;

    public int PerChannel { get; set; } = 3;

    public int LatencySubscribers { get; set; } = 100;

    public int Rate { get; set; } = 1_000;

    public int Window { get; set; } = 64;

    public int Payload { get; set; } = 100;

    public TimeSpan Warmup { get; set; } = TimeSpan.FromSeconds(3);

    public TimeSpan Duration { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>0: as many as the file-descriptor limit allows.</summary>
    public int IdleConnections { get; set; }

    public int IdlePerProcess { get; set; } = 10_000;

    public string? MarkdownPath { get; set; }

    public string? JsonPath { get; set; }

    public static string Usage => """
        Relay.Bench: Relay and its peers (NATS over WebSocket, ASP.NET Core SignalR) under the same load, in one run.

        usage: dotnet tests/Relay.Bench/bin/Release/net10.0/Relay.Bench.dll [scenario ...] [options]
          scenarios: fanout latency channels publish-ws publish-http idle (default: all)
          --targets relay,nats,signalr   which systems to measure (default: these three; also relay-redis: Relay over its Redis bus)
          --subscribers N      fanout: subscribers of the one channel (10000)
          --channels C         channels: how many channels (1000)
          --per-channel K      channels: subscribers per channel (3)
          --latency-subscribers N   latency: subscribers (100)
          --rate R             latency: publishes per second (1000)
          --window W           unacknowledged messages the publisher may have in flight (64)
          --payload B          payload bytes (100)
          --warmup S --duration S   seconds of warm-up and of measurement (3, 10)
          --idle-connections N idle: connections (default: the file-descriptor limit less 1000)
          --idle-per-process N idle: connections per client process (10000)
          --markdown PATH      write the figures into PATH between the bench markers (docs/benchmarks.md)
          --json PATH          write the raw results as JSON
          --quick              small sizes, for a smoke run
        """;

    public static BenchOptions Parse(string[] args)
    {
        var options = new BenchOptions();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int() => int.TryParse(Next(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= 0 ? value : throw new ArgumentException($"{args[i - 1]} needs a whole number, not '{args[i]}'");
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
                case "--rate": options.Rate = Int(); break;
                case "--window": options.Window = Int(); break;
                case "--payload": options.Payload = Int(); break;
                case "--warmup": options.Warmup = TimeSpan.FromSeconds(Int()); break;
                case "--duration": options.Duration = TimeSpan.FromSeconds(Int()); break;
                case "--idle-connections": options.IdleConnections = Int(); break;
                case "--idle-per-process": options.IdlePerProcess = Int(); break;
                case "--markdown": options.MarkdownPath = Next(); break;
                case "--json": options.JsonPath = Next(); break;
                case "--quick":
                    options.Subscribers = 200;
                    options.Channels = 20;
                    options.LatencySubscribers = 20;
                    options.Warmup = TimeSpan.FromSeconds(1);
                    options.Duration = TimeSpan.FromSeconds(2);
                    options.IdleConnections = 500;
                    options.IdlePerProcess = 250;
                    break;
                case var scenario when AllScenarios.Contains(scenario):
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

        if (options.Window < 1)
        {
            throw new ArgumentException("--window must be at least 1");
        }

        return options;
    }
}
