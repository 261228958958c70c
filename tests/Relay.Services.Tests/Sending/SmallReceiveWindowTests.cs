using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Services.Tests.Mqtt;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Sending;

/// <summary>
/// A subscriber with a small TCP receive window (an IoT device's: lwIP's is a few KiB, fixed from its SYN), set before
/// it connects and read continuously, gets every message in order, on Relay's bare socket and on Kestrel's transport,
/// over MQTT and over a realtime WebSocket: 8 MB in 2 KB messages in 0.1–2.3 s here. The 30 s bound is no speed check:
/// it is what a connection stuck on the kernel's 200 ms persist timer breaks (75–115 KB/s: 70–100 s for these 8 MB).
/// A buffer shrunk after connecting falls into it whoever sends (docs/benchmarks.md, MQTT), so it is not tested here.
/// Run one class at a time, after the parallel collections (the send-path collection): on a CPU loaded by the rest of
/// the suite the MQTT read loop's bursts come apart into small sends, and MQTT on the bare socket at 16 KiB fell into
/// the persist timer in a CI run (2,136 of 4,000 messages in 30 s at bf2d6df, 2026-12-07; docs/benchmarks.md).
/// </summary>
[Collection(nameof(Realtime.SendPathTests))]
public sealed class SmallReceiveWindowTests(ITestOutputHelper output)
{
    private const int Count = 4_000;
    private const int PayloadBytes = 2_000;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private static Task<RelayServer> StartAsync(bool bareSocket)
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:OwnTransport"] = bareSocket ? "true" : "false";
        settings["Relay:Ingress:OwnTransport"] = bareSocket ? "true" : "false";
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        return RelayServer.StartAsync(settings);
    }

    [Theory]
    [InlineData(true, 16 * 1024)]
    [InlineData(true, 4 * 1024)]
    [InlineData(false, 16 * 1024)]
    [InlineData(false, 4 * 1024)]
    public async Task Mqtt_QosZero_SmallWindowSubscriber_GetsEveryMessageInOrder(bool bareSocket, int receiveBuffer)
    {
        var topic = $"mqtt-window/{Guid.NewGuid():N}";
        await using var server = await StartAsync(bareSocket);
        await using var subscriber = await RawMqttClient.OpenAsync(server, receiveBufferBytes: receiveBuffer);
        await subscriber.ConnectAsync(4, "window-" + Guid.NewGuid().ToString("N")[..8]);
        await subscriber.SendAsync(RawMqttClient.Subscribe(topic, qos: 0));
        Assert.Equal((byte)0x90, (await subscriber.ReadPacketAsync())?.First);

        await using var publisher = await RawMqttClient.OpenAsync(server);
        await publisher.ConnectAsync(4, "window-pub-" + Guid.NewGuid().ToString("N")[..8]);

        // In bursts of 100 (200 KB), as a busy topic's come: well within the send budget whatever the subscriber reads.
        var clock = Stopwatch.StartNew();
        var publishing = Task.Run(async () =>
        {
            for (var from = 1; from <= Count; from += 100)
            {
                await publisher.SendAsync(MqttDeliveryOrderTests.Publishes(topic, from, 100, _ => 0, PayloadBytes));
            }
        });

        var numbers = new List<int>();
        while (numbers.Count < Count && clock.Elapsed < Bound)
        {
            var (first, body) = await subscriber.ReadPacketAsync(TimeSpan.FromSeconds(30)) ?? throw new InvalidOperationException($"closed after {numbers.Count} messages");
            Assert.Equal((byte)0x30, first);
            numbers.Add(MqttDeliveryOrderTests.NumberOf(body));
        }

        output.WriteLine($"{(bareSocket ? "bare socket" : "Kestrel")}, SO_RCVBUF {receiveBuffer}: {numbers.Count} messages ({numbers.Count * PayloadBytes / 1e6:F1} MB) in {clock.Elapsed.TotalSeconds:F1} s");
        await publishing.WaitAsync(Bound);
        Assert.True(numbers.Count == Count, $"{numbers.Count} of {Count} messages in {Bound.TotalSeconds} s: the small window is served slowly");
        Assert.Equal(Enumerable.Range(1, Count), numbers);
    }

    [Theory]
    [InlineData(true, 16 * 1024)]
    [InlineData(true, 4 * 1024)]
    [InlineData(false, 16 * 1024)]
    [InlineData(false, 4 * 1024)]
    public async Task WebSocket_SmallWindowSubscriber_GetsEveryMessageInOrder(bool bareSocket, int receiveBuffer)
    {
        const int Batch = 50;
        var channel = "window-" + Guid.NewGuid().ToString("N")[..8];
        await using var server = await StartAsync(bareSocket);
        await using var subscriber = await RawWebSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), receiveBuffer);
        await subscriber.SendTextAsync($$"""{"type":"subscribe","channel":"{{channel}}","ref":1}""");
        Assert.Equal("ok", (await subscriber.ReadJsonAsync()).GetProperty("type").GetString());

        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        var clock = Stopwatch.StartNew();
        var publishing = Task.Run(async () =>
        {
            for (var from = 1; from <= Count; from += Batch)
            {
                var body = JsonSerializer.Serialize(Enumerable.Range(from, Batch).Select(n => new { data = n.ToString(System.Globalization.CultureInfo.InvariantCulture).PadRight(PayloadBytes) }));
                using var response = await http.PostAsync($"v1/channels/{channel}/messages", new StringContent(body, Encoding.UTF8, "application/json"));
                Assert.Equal(HttpStatusCode.Created, response.StatusCode);
            }
        });

        var numbers = new List<int>();
        while (numbers.Count < Count && clock.Elapsed < Bound)
        {
            // One message per frame, or several in an array (PROTOCOL.md: the server may batch).
            var frame = await subscriber.ReadJsonAsync(TimeSpan.FromSeconds(30));
            foreach (var message in frame.ValueKind == JsonValueKind.Array ? frame.EnumerateArray().ToArray() : [frame])
            {
                Assert.Equal("message", message.GetProperty("type").GetString());
                numbers.Add(int.Parse(message.GetProperty("data").GetString()!.TrimEnd(), System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        output.WriteLine($"{(bareSocket ? "bare socket" : "Kestrel")}, SO_RCVBUF {receiveBuffer}: {numbers.Count} messages ({numbers.Count * PayloadBytes / 1e6:F1} MB) in {clock.Elapsed.TotalSeconds:F1} s");
        await publishing.WaitAsync(Bound);
        Assert.True(numbers.Count == Count, $"{numbers.Count} of {Count} messages in {Bound.TotalSeconds} s: the small window is served slowly");
        Assert.Equal(Enumerable.Range(1, Count), numbers);
    }
}
