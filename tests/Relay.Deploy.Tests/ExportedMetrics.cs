using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using Confluent.Kafka;
using Relay.Testing;

namespace Relay.Deploy.Tests;

/// <summary>
/// What a running Relay really writes at <c>/metrics</c>: the standalone host (every service's instruments in one
/// process) on the Redis bus (as the cluster runs: ingress then repairs gaps and counts them) of a real redis-server,
/// with the Kafka firehose and ingest on librdkafka's mock cluster, a subscriber, publishes over WebSocket
/// and HTTP and a record to ingest, scraped until every shape of instrument the code declares (counter, observable
/// counter and gauge, histogram in seconds, gauge with an annotation unit) has shown up at least once.
/// </summary>
public sealed class ExportedMetrics : IAsyncLifetime
{
    private const string FirehoseTopic = "metrics-firehose";
    private const string IngestTopic = "metrics-ingest";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private KafkaMockCluster? _kafka;
    private RedisServer? _redis;

    /// <summary>The sample names of the last scrape (name before its labels), with the text it came from.</summary>
    public IReadOnlySet<string> SampleNames { get; private set; } = new HashSet<string>();

    /// <summary>The scrape's text.</summary>
    public string Text { get; private set; } = "";

    /// <summary>Every name a query may use for Relay's hosts: what the scrape had, and every series Relay's instruments can produce.</summary>
    public IReadOnlySet<string> Names => SampleNames.Concat(RelayInstruments.SampleNames).ToHashSet(StringComparer.Ordinal);

    public async Task InitializeAsync()
    {
        _redis = await RedisServer.StartAsync();
        _kafka = KafkaMockCluster.Start(1);
        _kafka.CreateTopic(FirehoseTopic, 1);
        _kafka.CreateTopic(IngestTopic, 1);
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Bus"] = "redis",
            ["Relay:Redis:Configuration"] = _redis.Configuration,
            ["Relay:Kafka:BootstrapServers"] = _kafka.BootstrapServers,
            ["Relay:Kafka:FirehoseTopic"] = FirehoseTopic,
            ["Relay:Kafka:IngestTopics:0"] = IngestTopic,
            ["Relay:Kafka:IngestGroupId"] = "metrics",
            ["Relay:Kafka:IngestApp"] = RelayServer.AppId,
        });

        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "metrics:a" });
        Assert.Equal("ok", subscribed.GetProperty("type").GetString());

        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var published = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "metrics:a", ["data"] = new { n = 1 } });
        Assert.Equal("ok", published.GetProperty("type").GetString());

        var delivered = await subscriber.ReceiveMatchingAsync(static f => f.GetProperty("type").GetString() == "message");
        Assert.Equal("metrics:a", delivered.GetProperty("channel").GetString());

        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using (var response = await http.PostAsync(new Uri("v1/channels/metrics:a/messages", UriKind.Relative), new StringContent("""{"data":{"n":2}}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
        }

        using (var producer = new ProducerBuilder<string, string>(new ProducerConfig { BootstrapServers = _kafka.BootstrapServers }).Build())
        {
            await producer.ProduceAsync(IngestTopic, new Message<string, string> { Key = "metrics:a", Value = """{"n":3}""" }).WaitAsync(TestSocket.DefaultTimeout);
        }

        // Every shape of instrument the code declares, seen at least once: the naming rules are checked on each.
        var shapes = RelayInstruments.All.GroupBy(static i => i.Shape).ToList();
        var clock = Stopwatch.StartNew();
        List<string> missing;
        do
        {
            Text = await http.GetStringAsync(new Uri("metrics", UriKind.Relative)).WaitAsync(TestSocket.DefaultTimeout);
            SampleNames = Text.Split('\n')
                .Where(static l => l.Length > 0 && l[0] != '#')
                .Select(static l => l[..l.IndexOfAny(['{', ' '])])
                .ToHashSet(StringComparer.Ordinal);
            missing = shapes.Where(s => !s.Any(i => i.SampleNames.All(SampleNames.Contains))).Select(static s => s.Key).ToList();
            if (missing.Count > 0)
            {
                await Task.Delay(250);
            }
        }
        while (missing.Count > 0 && clock.Elapsed < Timeout);

        Assert.True(missing.Count == 0, $"no instrument of these shapes appeared at /metrics within {Timeout.TotalSeconds} s: {string.Join(", ", missing)}\n{Text}");
    }

    public async Task DisposeAsync()
    {
        _kafka?.Dispose();
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }
}
