using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using Relay.Kafka;
using Relay.Testing;

namespace Relay.Kafka.Tests;

/// <summary>
/// The firehose over librdkafka's mock cluster: messages published over WebSocket and HTTP at rate reach the topic once
/// each, in seq order per channel, keyed <c>app/channel</c>, with their headers; kcat reads them too.
/// </summary>
public sealed class FirehoseTests : IAsyncLifetime
{
    private const string Topic = "relay-firehose";
    private const int Channels = 8;
    private const int WebSocketPerChannel = 300;
    private const int HttpPerChannel = 150;
    private const string TraceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private KafkaMockCluster _kafka = null!;
    private OtlpReceiver _otlp = null!;
    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        _kafka = KafkaMockCluster.Start();
        _kafka.CreateTopic(Topic, 4);
        _otlp = await OtlpReceiver.StartAsync();
        _server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Kafka:BootstrapServers"] = _kafka.BootstrapServers,
            ["Relay:Kafka:FirehoseTopic"] = Topic,
            ["Relay:Ingress:PublishRatePerSecond"] = "1000000",
            ["Relay:Ingress:PublishBurst"] = "1000000",

            // Tracing on, so the publishes carry a traceparent for the firehose to write.
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = _otlp.Endpoint,
        });
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _otlp.DisposeAsync();
        _kafka.Dispose();
    }

    [Fact]
    public async Task Firehose_PublishesOverWebSocketAndHttpAtRate_EveryMessageOnceInSeqOrderWithHeaders()
    {
        var acknowledged = await PublishAsync("fh");
        var expected = acknowledged.Count;
        Assert.Equal(Channels * (WebSocketPerChannel + HttpPerChannel), expected);

        using var consumer = new ConsumerBuilder<string, byte[]>(new ConsumerConfig
        {
            BootstrapServers = _kafka.BootstrapServers,
            GroupId = "verify-" + Guid.NewGuid().ToString("N"),
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = false,
        }).Build();
        consumer.Subscribe(Topic);
        var records = new List<ConsumeResult<string, byte[]>>();
        var deadline = Stopwatch.StartNew();
        while (records.Count < expected && deadline.Elapsed < Timeout)
        {
            if (consumer.Consume(TimeSpan.FromMilliseconds(500)) is { } record)
            {
                records.Add(record);
            }
        }

        // Anything more would be a message written twice.
        while (consumer.Consume(TimeSpan.FromSeconds(1)) is { } extra)
        {
            records.Add(extra);
        }

        consumer.Close();
        Assert.Equal(expected, records.Count);

        var lastSeq = new Dictionary<string, long>();
        var epochs = new Dictionary<string, string>();
        var partitions = new Dictionary<string, int>();
        var traced = 0;
        foreach (var record in records)
        {
            var message = record.Message;
            var channel = Header(message, KafkaHeaders.Channel);
            Assert.Equal(RelayServer.AppId, Header(message, KafkaHeaders.App));
            Assert.Equal($"{RelayServer.AppId}/{channel}", message.Key);
            var seq = long.Parse(Header(message, KafkaHeaders.Seq)!, CultureInfo.InvariantCulture);
            var id = Header(message, KafkaHeaders.Id)!;
            Assert.True(acknowledged.TryGetValue(id, out var ack), $"record with id {id} was never acknowledged");
            Assert.Equal((channel, seq), (ack.Channel, ack.Seq));
            Assert.Equal(id, JsonDocument.Parse(message.Value).RootElement.GetProperty("id").GetString());
            Assert.Equal("json", Header(message, KafkaHeaders.Encoding));
            Assert.Equal("tick", Header(message, KafkaHeaders.Name));

            // In order per channel, each seq once, with no gap: one channel, one partition, one epoch.
            Assert.Equal(lastSeq.GetValueOrDefault(channel!) + 1, seq);
            lastSeq[channel!] = seq;
            Assert.Equal(epochs.TryAdd(channel!, Header(message, KafkaHeaders.Epoch)!) ? epochs[channel!] : epochs[channel!], Header(message, KafkaHeaders.Epoch));
            Assert.Equal(partitions.TryAdd(channel!, record.Partition.Value) ? partitions[channel!] : partitions[channel!], record.Partition.Value);
            if (Header(message, KafkaHeaders.TraceParent) is { } traceParent && id.StartsWith("http", StringComparison.Ordinal))
            {
                // The HTTP publishes sent a traceparent with this trace id: the record continues that trace.
                Assert.Equal(TraceId, traceParent.Split('-')[1]);
                traced++;
            }
        }

        Assert.Equal(Channels * HttpPerChannel, traced);
        Assert.All(lastSeq.Values, last => Assert.Equal(WebSocketPerChannel + HttpPerChannel, last));
        Assert.Equal(expected, await PrometheusText.ScrapeAsync(_server.BaseAddress, "relay_kafka_firehose_produced_total"));
    }

    [Fact]
    public async Task Firehose_ReadByKcat_ShowsKeysHeadersAndOrder()
    {
        var acknowledged = await PublishAsync("kc");
        var expected = acknowledged.Count;

        // kcat is a test dependency (.ci/run installs it): a machine without it fails here, loudly.
        var kcat = new ProcessStartInfo("kcat")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in new[] { "-b", _kafka.BootstrapServers, "-C", "-t", Topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%h\t%s\n" })
        {
            kcat.ArgumentList.Add(argument);
        }

        using var process = Process.Start(kcat) ?? throw new InvalidOperationException("kcat did not start");
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(Timeout);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
        }

        Assert.True(process.ExitCode == 0, "kcat failed: " + await errors);
        var lines = (await output).Split('\n', StringSplitOptions.RemoveEmptyEntries);

        // Only the messages this test published; its channels are its own.
        var lastSeq = new Dictionary<string, long>();
        var seen = 0;
        foreach (var line in lines)
        {
            var parts = line.Split('\t');
            Assert.Equal(3, parts.Length);
            var headers = parts[1].Split(',').Select(static h => h.Split('=', 2)).ToDictionary(static h => h[0], static h => h[1]);
            var channel = headers[KafkaHeaders.Channel];
            if (!channel.StartsWith("kc:", StringComparison.Ordinal))
            {
                continue;
            }

            seen++;
            Assert.Equal($"{RelayServer.AppId}/{channel}", parts[0]);
            var seq = long.Parse(headers[KafkaHeaders.Seq], CultureInfo.InvariantCulture);
            Assert.Equal(lastSeq.GetValueOrDefault(channel) + 1, seq);
            lastSeq[channel] = seq;
            var id = headers[KafkaHeaders.Id];
            Assert.Equal((channel, seq), acknowledged[id]);
            Assert.Equal(id, JsonDocument.Parse(parts[2]).RootElement.GetProperty("id").GetString());
        }

        Assert.Equal(expected, seen);
    }

    /// <summary>
    /// Publishes on <see cref="Channels"/> channels named <c>{prefix}:N</c>: a WebSocket connection per channel with 100
    /// publishes in flight, and HTTP posts four at a time; returns each message's id with its acknowledged seq.
    /// </summary>
    private async Task<Dictionary<string, (string Channel, long Seq)>> PublishAsync(string prefix)
    {
        var acknowledged = new System.Collections.Concurrent.ConcurrentDictionary<string, (string, long)>();
        var sockets = Enumerable.Range(0, Channels).Select(c => PublishOverWebSocketAsync($"{prefix}:{c}", acknowledged));
        var posts = Enumerable.Range(0, Channels).Select(c => PublishOverHttpAsync($"{prefix}:{c}", acknowledged));
        await Task.WhenAll(sockets.Concat(posts)).WaitAsync(Timeout);
        return new Dictionary<string, (string, long)>(acknowledged);
    }

    private async Task PublishOverWebSocketAsync(string channel, System.Collections.Concurrent.ConcurrentDictionary<string, (string, long)> acknowledged)
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        const int window = 100;
        for (var start = 0; start < WebSocketPerChannel; start += window)
        {
            var refs = new Dictionary<int, string>();
            for (var i = start; i < Math.Min(start + window, WebSocketPerChannel); i++)
            {
                var id = $"ws-{channel}-{i}";
                var reference = socket.NextRef();
                refs[reference] = id;
                await socket.SendAsync(new Dictionary<string, object?> { ["type"] = "publish", ["ref"] = reference, ["channel"] = channel, ["name"] = "tick", ["id"] = id, ["data"] = new { id, i } });
            }

            while (refs.Count > 0)
            {
                var reply = await socket.ReceiveMatchingAsync(static e => e.TryGetProperty("ref", out _), TimeSpan.FromSeconds(30));
                Assert.Equal("ok", reply.GetProperty("type").GetString());
                Assert.True(refs.Remove(reply.GetProperty("ref").GetInt32(), out var id));
                acknowledged[id] = (channel, reply.GetProperty("seq").GetInt64());
            }
        }
    }

    private async Task PublishOverHttpAsync(string channel, System.Collections.Concurrent.ConcurrentDictionary<string, (string, long)> acknowledged)
    {
        // The server's HttpClient instrumentation sees this process's requests too: without a propagator, the client
        // sends its traceparent untouched, as a browser would.
        using var http = new HttpClient(new SocketsHttpHandler { ActivityHeadersPropagator = null }) { BaseAddress = _server.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        for (var i = 0; i < HttpPerChannel; i++)
        {
            var id = $"http-{channel}-{i}";
            using var request = new HttpRequestMessage(HttpMethod.Post, $"v1/channels/{channel}/messages")
            {
                Content = new StringContent(JsonSerializer.Serialize(new { name = "tick", id, data = new { id, i } }), Encoding.UTF8, "application/json"),
            };
            request.Headers.Add("traceparent", $"00-{TraceId}-{i + 1:x16}-01");
            using var response = await http.SendAsync(request);
            Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            acknowledged[id] = (channel, body.RootElement.GetProperty("seqs")[0].GetInt64());
        }
    }

    private static string? Header(Message<string, byte[]> message, string name) =>
        message.Headers.TryGetLastBytes(name, out var bytes) ? Encoding.UTF8.GetString(bytes) : null;
}
