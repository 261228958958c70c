using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Relay.Integration.Tests.Distributed;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Overload;

/// <summary>
/// The standalone host started with a low open-file limit (<c>prlimit --nofile=800</c>) and told it has 16 cores (so
/// the runtime grows its thread pool as on the machine where this first crashed), then flooded with far more
/// connections than it may open: realtime upgrades, SSE streams and keep-alive HTTP requests. Before the connection
/// cap the runtime ran out of descriptors starting a thread and aborted ("Out of memory.", SIGABRT). Now: the node
/// lives, every connection past the cap is answered 503 with the protocol's 50300 body and <c>Retry-After</c>,
/// existing clients keep their service, probes answer, and once the flood goes the node accepts again with no
/// socket left behind (none in CLOSE_WAIT).
/// </summary>
[Collection(nameof(ConnectionFloodTests))]
[CollectionDefinition(nameof(ConnectionFloodTests), DisableParallelization = true)]
public sealed class ConnectionFloodTests(ITestOutputHelper output)
{
    private const int DescriptorLimit = 800;
    private const int Existing = 10;

    [Fact]
    public Task RealtimeUpgrades_PastTheDescriptorLimit_AreRefusedWith503_AndTheNodeLivesOn() =>
        FloodAsync(Upgrade, accepted: 101);

    [Fact]
    public Task RealtimeUpgrades_OnKestrelsOwnTransport_PastTheDescriptorLimit_AreRefusedWith503_AndTheNodeLivesOn() =>
        FloodAsync(Upgrade, accepted: 101, ownTransport: false);

    [Fact]
    public Task SseStreams_PastTheDescriptorLimit_AreRefusedWith503_AndTheNodeLivesOn() =>
        FloodAsync(port => $"GET /v1/sse?channel=flood&key={Uri.EscapeDataString(RelayServer.Key)} HTTP/1.1\r\nHost: x\r\n\r\n", accepted: 200);

    [Fact]
    public Task KeepAliveHttpRequests_PastTheDescriptorLimit_AreRefusedWith503_AndTheNodeLivesOn() =>
        FloodAsync(port => $"GET /v1/channels HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key))}\r\n\r\n", accepted: 200);

    /// <summary>
    /// MQTT CONNECTs flooding the MQTT port: each past the cap is answered in MQTT (CONNACK 0x03 on 3.1.1), never with
    /// an HTTP answer or a silent close; an MQTT client there before the flood keeps its service (QoS 1 acknowledged and
    /// delivered to itself), as do the realtime clients; once the flood goes, the node takes MQTT connections again and
    /// holds no socket of it.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task MqttConnects_PastTheDescriptorLimit_AreRefusedWithConnAck_AndTheNodeLivesOn(bool ownTransport)
    {
        await using var host = await ServiceProcess.StartStandaloneAsync(
            new Dictionary<string, string>
            {
                ["DOTNET_PROCESSOR_COUNT"] = "16",
                ["Logging__LogLevel__Default"] = "Warning",
                ["Logging__LogLevel__Relay.Ingress.Mqtt.MqttListener"] = "Information",
                ["Relay__Mqtt__OwnTransport"] = ownTransport ? "true" : "false",
            },
            DescriptorLimit);
        var mqttPort = await host.MqttPortAsync();
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{host.Port}/"), Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal(200, (int)(await http.GetAsync(new Uri("healthz", UriKind.Relative))).StatusCode);
        var realtime = new Uri($"ws://127.0.0.1:{host.Port}/v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)}");
        var existing = new List<TestSocket>();
        await using var device = await RawMqttClient.OpenAsync(mqttPort);
        try
        {
            await device.ConnectAsync(4, "flood-device");
            await device.SendAsync(RawMqttClient.Subscribe("device/echo", qos: 1));
            Assert.Equal((byte)0x90, (await device.ReadPacketAsync())?.First);
            for (var i = 0; i < Existing; i++)
            {
                var client = await TestSocket.ConnectAsync(realtime);
                await client.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "steady" });
                existing.Add(client);
            }

            var total = 2 * DescriptorLimit;
            var flooding = System.Diagnostics.Stopwatch.StartNew();
            var flood = await Task.WhenAll(Enumerable.Range(0, total).Select(i => ConnectMqttAsync(mqttPort, "flood-" + i)));
            flooding.Stop();
            try
            {
                Assert.False(host.HasExited, "the node died under the flood:\n" + host.Tail());
                var cap = (int)await MetricAsync(http, "relay_ingress_connections_max");
                var answers = flood.GroupBy(static f => f.Code).ToDictionary(static g => g.Key, static g => g.Count());
                output.WriteLine($"cap {cap}; answers: " + string.Join(", ", answers.Select(static a => $"{a.Key}: {a.Value}")) + $" ({flooding.Elapsed.TotalSeconds:F1} s)");
                foreach (var failure in flood.Where(static f => f.Failure is not null).GroupBy(static f => f.Failure))
                {
                    output.WriteLine($"  no answer: {failure.Count()} × {failure.Key}");
                }

                // Accepted (0x00) up to the cap, every other one refused in MQTT (0x03): none closed without a word.
                Assert.InRange(answers.GetValueOrDefault(0x00), 1, cap - Existing - 1);
                Assert.Equal(total, answers.GetValueOrDefault(0x00) + answers.GetValueOrDefault(0x03));

                await ExistingClientsAreServedAsync(existing, "during the flood");
                await DeviceIsServedAsync(device, 1);
                Assert.Equal(503, (int)(await http.GetAsync(new Uri("readyz", UriKind.Relative))).StatusCode);
                Assert.True(Descriptors(host) < DescriptorLimit, $"{Descriptors(host)} descriptors open");
            }
            finally
            {
                foreach (var (client, _, _) in flood)
                {
                    if (client is not null)
                    {
                        await client.DisposeAsync();
                    }
                }
            }

            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (await MetricAsync(http, "relay_ingress_sockets_open") > Existing + 3 || CloseWait(mqttPort) > 0)
            {
                Assert.True(DateTime.UtcNow < deadline, $"sockets open {await MetricAsync(http, "relay_ingress_sockets_open")}, CLOSE_WAIT {CloseWait(mqttPort)} 20 s after the flood closed");
                await Task.Delay(200);
            }

            await using (var after = await RawMqttClient.OpenAsync(mqttPort))
            {
                await after.ConnectAsync(5, "flood-after");
            }

            await DeviceIsServedAsync(device, 2);
            Assert.Equal(200, (int)(await http.GetAsync(new Uri("readyz", UriKind.Relative))).StatusCode);
            Assert.False(host.HasExited);
        }
        finally
        {
            foreach (var client in existing)
            {
                await client.DisposeAsync();
            }
        }
    }

    // A QoS 1 publish to the device's own topic: acknowledged, then delivered back to it.
    private static async Task DeviceIsServedAsync(RawMqttClient device, ushort id)
    {
        await device.SendAsync(RawMqttClient.Publish("device/echo", 1, id, "ping " + id));
        var seen = new HashSet<byte>();
        while (seen.Count < 2)
        {
            var packet = await device.ReadPacketAsync(TimeSpan.FromSeconds(10)) ?? throw new InvalidOperationException("the device's connection closed");
            seen.Add((byte)(packet.First & 0xF0));
            if ((packet.First & 0xF0) == 0x30 && (packet.First & 0x06) != 0)
            {
                // The delivery at QoS 1: acknowledged, as a client does.
                var packetId = packet.Body.AsSpan(2 + ((packet.Body[0] << 8) | packet.Body[1]), 2);
                await device.SendAsync([0x40, 0x02, packetId[0], packetId[1]]);
            }
        }

        Assert.Equal(new byte[] { 0x30, 0x40 }, seen.Order().ToArray());
    }

    // Connects and sends CONNECT (3.1.1): the CONNACK's return code, or -1 when the connection failed or closed without
    // one, with what happened (the connect timing out, a reset, the end of the stream) for the test's output.
    private static async Task<(RawMqttClient? Client, int Code, string? Failure)> ConnectMqttAsync(int port, string clientId)
    {
        RawMqttClient? client = null;
        var stage = "connect";
        try
        {
            client = await RawMqttClient.OpenAsync(port);
            stage = "CONNACK";
            await client.SendAsync(RawMqttClient.Connect(4, clientId));
            var packet = await client.ReadPacketAsync(TimeSpan.FromSeconds(30));
            return packet is { First: 0x20 } connAck ? (client, connAck.Body[1], null) : (client, -1, packet is null ? "closed before the CONNACK" : $"packet 0x{packet.Value.First:X2}");
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or TimeoutException or InvalidOperationException)
        {
            return (client, -1, $"{e.GetType().Name} awaiting the {stage}");
        }
    }

    private static string Upgrade(int port) =>
        $"GET /v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {Convert.ToBase64String(Guid.NewGuid().ToByteArray())}\r\nSec-WebSocket-Version: 13\r\n\r\n";

    private async Task FloodAsync(Func<int, string> request, int accepted, bool ownTransport = true)
    {
        await using var host = await ServiceProcess.StartStandaloneAsync(
            new Dictionary<string, string>
            {
                ["DOTNET_PROCESSOR_COUNT"] = "16",
                ["Logging__LogLevel__Default"] = "Warning",
                ["Relay__Ingress__OwnTransport"] = ownTransport ? "true" : "false",
            },
            DescriptorLimit);
        var baseUri = new Uri($"http://127.0.0.1:{host.Port}/");
        using var http = new HttpClient { BaseAddress = baseUri, Timeout = TimeSpan.FromSeconds(10) };
        var descriptorsBefore = Descriptors(host);

        // This client's keep-alive connection is opened now, so it is one of those the node holds at the cap.
        Assert.Equal(200, (int)(await http.GetAsync(new Uri("healthz", UriKind.Relative))).StatusCode);

        // Clients that were there before the flood: one publishes, the others follow the channel.
        var realtime = new Uri($"ws://127.0.0.1:{host.Port}/v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)}");
        var existing = new List<TestSocket>();
        try
        {
            for (var i = 0; i < Existing; i++)
            {
                var client = await TestSocket.ConnectAsync(realtime);
                await client.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "steady" });
                existing.Add(client);
            }

            // Twice the descriptor limit, all at once.
            var total = 2 * DescriptorLimit;
            var flood = await Task.WhenAll(Enumerable.Range(0, total).Select(_ => OpenAsync(host.Port, request(host.Port))));
            try
            {
                Assert.False(host.HasExited, "the node died under the flood:\n" + host.Tail());
                var cap = (int)await MetricAsync(http, "relay_ingress_connections_max");
                output.WriteLine($"cap {cap}, descriptors open before the flood {descriptorsBefore}");
                Assert.InRange(cap, 1, DescriptorLimit - descriptorsBefore);
                var answers = flood.GroupBy(static f => f.Status).ToDictionary(static g => g.Key, static g => g.Count());
                output.WriteLine("answers: " + string.Join(", ", answers.Select(static a => $"{a.Key}: {a.Value}")));
                Assert.InRange(answers.GetValueOrDefault(accepted), 1, cap - Existing);
                Assert.Equal(total, answers.GetValueOrDefault(accepted) + answers.GetValueOrDefault(503));
                foreach (var refused in flood.Where(static f => f.Status == 503))
                {
                    Assert.Contains("\r\nRetry-After: ", refused.Head, StringComparison.Ordinal);
                    Assert.Equal(50300, JsonDocument.Parse(refused.Body).RootElement.GetProperty("error").GetProperty("code").GetInt32());
                }

                // At the cap: existing clients are served; on Relay's transport liveness answers on a new connection and
                // readiness says the node is full (Kestrel's transport refuses them like any other: docs/protocol.md).
                await ExistingClientsAreServedAsync(existing, "during the flood");
                using var probe = new HttpClient { BaseAddress = baseUri, Timeout = TimeSpan.FromSeconds(10) };
                Assert.Equal(ownTransport ? 200 : 503, (int)(await probe.GetAsync(new Uri("healthz", UriKind.Relative))).StatusCode);
                Assert.Equal(503, (int)(await http.GetAsync(new Uri("readyz", UriKind.Relative))).StatusCode);
                Assert.True(await MetricAsync(http, "relay_ingress_connections_refused_total") >= answers.GetValueOrDefault(503));
                Assert.True(Descriptors(host) < DescriptorLimit, $"{Descriptors(host)} descriptors open");
            }
            finally
            {
                foreach (var (socket, _, _, _) in flood)
                {
                    socket?.Dispose();
                }
            }

            // The flood gone, the node takes connections again and holds nothing of it.
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (await MetricAsync(http, "relay_ingress_sockets_open") > Existing + 2 || CloseWait(host.Port) > 0)
            {
                Assert.True(DateTime.UtcNow < deadline, $"sockets open {await MetricAsync(http, "relay_ingress_sockets_open")}, CLOSE_WAIT {CloseWait(host.Port)} 20 s after the flood closed");
                await Task.Delay(200);
            }

            await using (var after = await TestSocket.ConnectAsync(realtime))
            {
                Assert.Equal("connected", after.Connected.GetProperty("type").GetString());
            }

            Assert.Equal(200, (int)(await http.GetAsync(new Uri("readyz", UriKind.Relative))).StatusCode);
            await ExistingClientsAreServedAsync(existing, "after the flood");
            Assert.InRange(Descriptors(host), 0, descriptorsBefore + Existing + 64);
            Assert.False(host.HasExited);
        }
        finally
        {
            foreach (var client in existing)
            {
                await client.DisposeAsync();
            }
        }
    }

    private static async Task ExistingClientsAreServedAsync(List<TestSocket> existing, string when)
    {
        var text = $"still here {when}";
        var ack = await existing[0].RequestAsync(new() { ["type"] = "publish", ["channel"] = "steady", ["data"] = text });
        Assert.True(ack.GetProperty("type").GetString() == "ok", ack.GetRawText());
        foreach (var client in existing)
        {
            Assert.Equal(text, (await client.ReceiveMessageAsync(TimeSpan.FromSeconds(10))).GetProperty("data").GetString());
        }
    }

    // Connects, sends the request, and reads the answer's head (and a 503's body); the socket stays open.
    private static async Task<(Socket? Socket, int Status, string Head, string Body)> OpenAsync(int port, string request)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await socket.ConnectAsync("127.0.0.1", port, timeout.Token);
            await socket.SendAsync(Encoding.ASCII.GetBytes(request), SocketFlags.None, timeout.Token);
            var received = new List<byte>();
            var buffer = new byte[4096];
            while (true)
            {
                var text = Encoding.ASCII.GetString([.. received]);
                var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end >= 0)
                {
                    var status = int.Parse(text.AsSpan(9, 3), CultureInfo.InvariantCulture);
                    var head = text[..(end + 2)];
                    if (status != 503)
                    {
                        return (socket, status, head, "");
                    }

                    var length = int.Parse(head.Split("\r\n").Single(static l => l.StartsWith("Content-Length: ", StringComparison.Ordinal))["Content-Length: ".Length..], CultureInfo.InvariantCulture);
                    if (received.Count - end - 4 >= length)
                    {
                        return (socket, status, head, text.Substring(end + 4, length));
                    }
                }

                var read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
                if (read == 0)
                {
                    return (socket, 0, text, "");
                }

                received.AddRange(buffer.AsSpan(0, read));
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return (socket, -1, e.Message, "");
        }
    }

    private static Task<long> MetricAsync(HttpClient http, string name) => PrometheusText.ScrapeAsync(http, name);

    private static int Descriptors(ServiceProcess host) => Directory.GetFileSystemEntries($"/proc/{host.ProcessId}/fd").Length;

    // Sockets of the node's port in CLOSE_WAIT (state 08 in /proc/net/tcp): the peer closed and the node did not.
    private static int CloseWait(int port)
    {
        var local = $":{port:X4} ";
        return File.ReadLines("/proc/net/tcp").Skip(1)
            .Select(static line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Count(fields => (fields[1] + " ").EndsWith(local, StringComparison.Ordinal) && fields[3] == "08");
    }
}
