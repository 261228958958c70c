using System.Diagnostics;
using System.Globalization;

namespace Relay.Bench.Targets;

/// <summary>The targets by name, and the versions of the peers the report names.</summary>
internal static class Targets
{
    public static Target ByName(string name) => name switch
    {
        "relay" => new RelayTarget(),
        "relay-redis" => new RelayTarget(redisBus: true),
        "relay-redis-fanout1" => new RelayTarget(redisBus: true, fanOutProcesses: 1),
        "relay-redis-fanout2" => new RelayTarget(redisBus: true, fanOutProcesses: 2),
        "nats" => new NatsTarget(),
        "signalr" => new SignalRTarget(),
        "relay-mqtt" => new RelayMqttTarget(),
        "mosquitto" => new MosquittoTarget(),
        "relay-pusher" => new RelayPusherTarget(),
        _ => throw new ArgumentException($"unknown target '{name}': use relay, relay-redis, relay-redis-fanout1, relay-redis-fanout2, nats, signalr, relay-mqtt, mosquitto or relay-pusher"),
    };

    public static string PeerVersions(IEnumerable<string> names)
    {
        var parts = new List<string>();
        foreach (var name in names)
        {
            switch (name)
            {
                case "nats":
                    parts.Add(NatsVersion());
                    break;
                case "relay-redis":
                    parts.Add("Relay over its Redis bus (redis-server from Debian; its CPU and memory not counted)");
                    break;
                case "relay-redis-fanout1" or "relay-redis-fanout2":
                    parts.Add($"{name}: Relay's services as separate processes over Redis, the ingress node measured as the server (routing's and each fan-out process's CPU in the log)");
                    break;
                case "relay-mqtt":
                    parts.Add("relay-mqtt: Relay's standalone host over MQTT 3.1.1 on TCP");
                    break;
                case "mosquitto":
                    parts.Add(MosquittoVersion());
                    break;
                case "relay-pusher":
                    parts.Add("relay-pusher: Relay's standalone host with subscribers on the Pusher protocol (/app/{key}, protocol 7) and publishers on Relay's own");
                    break;
                case "signalr":
                    parts.Add($"ASP.NET Core SignalR {Environment.Version} (tests/Relay.Bench/peers/SignalRPeer)");
                    break;
            }
        }

        return parts.Count == 0 ? "none" : string.Join(", ", parts);
    }

    private static string MosquittoVersion()
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(BenchEnvironment.FindExecutable("mosquitto", "apt-get install mosquitto"), "-h") { RedirectStandardOutput = true })!;
            var version = process.StandardOutput.ReadLine()?.Trim() ?? "mosquitto";
            process.WaitForExit();
            return $"{version} over MQTT 3.1.1 on TCP";
        }
        catch (FileNotFoundException)
        {
            return "mosquitto (not installed)";
        }
    }

    private static string NatsVersion()
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(BenchEnvironment.FindExecutable("nats-server", "apt-get install nats-server"), "--version") { RedirectStandardOutput = true })!;
            var version = process.StandardOutput.ReadToEnd().Trim();
            process.WaitForExit();
            return $"{version} over WebSocket";
        }
        catch (FileNotFoundException)
        {
            return "nats-server (not installed)";
        }
    }
}

/// <summary>Process limits from /proc.</summary>
internal static class Limits
{
    /// <summary>The hard limit on open files: how many connections one process can hold.</summary>
    public static int OpenFilesHard()
    {
        foreach (var line in File.ReadLines("/proc/self/limits"))
        {
            if (line.StartsWith("Max open files", StringComparison.Ordinal))
            {
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return int.TryParse(fields[4], NumberStyles.Integer, CultureInfo.InvariantCulture, out var hard) ? hard : 65536;
            }
        }

        return 1024;
    }
}
