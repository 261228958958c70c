using System.Globalization;
using System.Text;
using Relay.Bench.Load;

namespace Relay.Bench.Targets;

/// <summary>
/// MQTT 3.1.1 over plain TCP (<c>tcp://</c> addresses: <see cref="BenchSocket"/> sends and reads the bytes as they are):
/// CONNECT with keep-alive 0 (idle connections stay quiet), SUBSCRIBE and PUBLISH at QoS 0. A subscribe and a burst of
/// publishes are confirmed by a PINGREQ after them: a broker answers a connection's packets in order, so its PINGRESP
/// (<c>D0 00</c>) comes after the SUBACK and after every publish before it was taken.
/// </summary>
internal abstract class MqttTarget : Target
{
    private static long s_clientIds;

    private static readonly byte[] s_pingRequest = [0xC0, 0x00];

    // CONNACK accepted / not authorized (3.1.1 §3.2.2.3); PINGRESP.
    public override ProtocolTokens Tokens { get; } = new([0x20, 0x02, 0x00, 0x00], [0xD0, 0x00], [0x20, 0x02, 0x00, 0x05]);

    public override bool AcksEachPublish => false;

    public override byte[] BurstTerminator => s_pingRequest;

    /// <summary>The CONNECT's user name and password, or null for an anonymous connection.</summary>
    protected abstract (string User, string Password)? Credentials { get; }

    public override async Task HandshakeAsync(BenchSocket socket)
    {
        // Unique across the idle scenario's client processes too: a client id in use is taken over (MQTT 3.1.1 §3.1.4).
        var clientId = string.Create(CultureInfo.InvariantCulture, $"bench-{Environment.ProcessId}-{Interlocked.Increment(ref s_clientIds)}");
        var body = new List<byte>();
        Utf8(body, "MQTT");
        body.Add(4);
        body.Add((byte)(0x02 | (Credentials is null ? 0 : 0xC0)));
        body.AddRange([0, 0]);
        Utf8(body, clientId);
        if (Credentials is { } credentials)
        {
            Utf8(body, credentials.User);
            Utf8(body, credentials.Password);
        }

        await socket.SendTextAsync(Packet(0x10, body)).ConfigureAwait(false);
        await socket.Scanner.WaitAsync(() => socket.Scanner.Readies >= 1, BenchEnvironment.RequestTimeout, "the connection (CONNACK)").ConfigureAwait(false);
    }

    public override async Task SubscribeAsync(BenchSocket socket, string channel)
    {
        var body = new List<byte> { 0, 1 };
        Utf8(body, channel);
        body.Add(0);
        var acks = socket.Scanner.Acks;
        byte[] request = [.. Packet(0x82, body), .. s_pingRequest];
        await socket.SendTextAsync(request).ConfigureAwait(false);
        await socket.Scanner.WaitAsync(() => socket.Scanner.Acks >= acks + 1, BenchEnvironment.RequestTimeout, $"SUBSCRIBE {channel}").ConfigureAwait(false);
    }

    public override PublishTemplate PublishTemplate(string channel, int payloadSize, bool wantAck)
    {
        var topic = new List<byte>();
        Utf8(topic, channel);
        var header = Packet(0x30, topic, payloadSize);
        var bytes = new byte[header.Length + payloadSize];
        header.CopyTo(bytes, 0);
        Stamp.Write(bytes.AsSpan(header.Length), payloadSize, 0);
        return new PublishTemplate(bytes, header.Length);
    }

    // A packet's fixed header and the body so far; extra bytes (a payload written after) count in its length.
    private static byte[] Packet(byte type, List<byte> body, int extra = 0)
    {
        var packet = new List<byte> { type };
        var length = body.Count + extra;
        do
        {
            var digit = (byte)(length % 128);
            length /= 128;
            packet.Add(length > 0 ? (byte)(digit | 0x80) : digit);
        }
        while (length > 0);
        packet.AddRange(body);
        return [.. packet];
    }

    private static void Utf8(List<byte> into, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        into.Add((byte)(bytes.Length >> 8));
        into.Add((byte)bytes.Length);
        into.AddRange(bytes);
    }
}

/// <summary>Relay's standalone host as shipped, its MQTT listener (<c>Relay:Mqtt:Port</c>) on a free port.</summary>
internal sealed class RelayMqttTarget : MqttTarget
{
    public override string Name => "relay-mqtt";

    protected override (string User, string Password)? Credentials => ("bench.root", "bench-secret-0123456789");

    public override async Task<RunningTarget> StartAsync(BenchEnvironment environment)
    {
        var settings = RelayTarget.Settings();
        var mqttPort = ServerProcess.FreePort();
        var httpPort = ServerProcess.FreePort();
        settings["Relay__Mqtt__Port"] = mqttPort.ToString(CultureInfo.InvariantCulture);
        var server = await ServerProcess.StartAsync(
            Name,
            "dotnet",
            [environment.RepoPath("services/Relay.Standalone/bin/Release/net10.0/Relay.Standalone.dll"), "--urls", $"http://127.0.0.1:{httpPort}"],
            settings,
            mqttPort,
            environment.LogDirectory).ConfigureAwait(false);
        return new RunningTarget(server, new Uri($"tcp://127.0.0.1:{mqttPort}"), new Uri($"http://127.0.0.1:{httpPort}/"));
    }
}

/// <summary>
/// mosquitto (Debian), the reference MQTT broker: anonymous, no persistence, no limit on connections, queued messages
/// or in-flight bytes per client that the harness's bursts could reach before Relay's (its 64 MiB send budget).
/// </summary>
internal sealed class MosquittoTarget : MqttTarget
{
    public override string Name => "mosquitto";

    protected override (string User, string Password)? Credentials => null;

    public override async Task<RunningTarget> StartAsync(BenchEnvironment environment)
    {
        var binary = BenchEnvironment.FindExecutable("mosquitto", "apt-get install mosquitto");
        var port = ServerProcess.FreePort();
        var config = Path.Combine(environment.LogDirectory, $"mosquitto-{port}.conf");
        Directory.CreateDirectory(environment.LogDirectory);
        await File.WriteAllTextAsync(config, $"""
            listener {port} 127.0.0.1
            allow_anonymous true
            persistence false
            max_connections -1
            max_queued_messages 0
            max_queued_bytes 67108864
            max_inflight_messages 0
            log_type error
            log_type warning
            """).ConfigureAwait(false);
        var server = await ServerProcess.StartAsync("mosquitto", binary, ["-c", config], new Dictionary<string, string>(), port, environment.LogDirectory).ConfigureAwait(false);
        return new RunningTarget(server, new Uri($"tcp://127.0.0.1:{port}"), null);
    }
}
