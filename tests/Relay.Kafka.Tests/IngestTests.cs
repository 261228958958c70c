using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using Relay.Kafka;
using Relay.Testing;

namespace Relay.Kafka.Tests;

/// <summary>
/// Ingest over librdkafka's mock cluster: records produced to an ingest topic reach WebSocket subscribers once each, in
/// order per channel, across a restart of the ingest host, and bad records are counted and skipped without stalling.
/// </summary>
public sealed class IngestTests
{
    private const string Group = "relay-ingest";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Ingest_HostRestartedMidStreamAndOffsetsRewound_EveryRecordReachesSubscribersExactlyOnce()
    {
        const string topic = "ingest";
        const int channels = 6;
        const int perChannel = 1000;
        await using var redis = await RedisServer.StartAsync();
        using var kafka = KafkaMockCluster.Start();
        kafka.CreateTopic(topic, 3);

        // Two Relays over one Redis: subscribers on one, ingest on the other, which is stopped and started again.
        Dictionary<string, string?> Settings(bool ingest)
        {
            var settings = new Dictionary<string, string?>
            {
                ["Relay:Bus"] = "redis",
                ["Relay:Redis:Configuration"] = redis.Configuration,
                ["Relay:Redis:LeaseTtl"] = "00:00:02",
            };
            if (ingest)
            {
                settings["Relay:Kafka:BootstrapServers"] = kafka.BootstrapServers;
                settings["Relay:Kafka:IngestTopics:0"] = topic;
                settings["Relay:Kafka:IngestGroupId"] = Group;
                settings["Relay:Kafka:IngestApp"] = RelayServer.AppId;

                // After a consumer leaves, the group waits up to the session timeout for the others to rejoin.
                settings["Relay:Kafka:IngestSessionTimeout"] = "00:00:03";
            }

            return settings;
        }

        await using var subscriberHost = await RelayServer.StartAsync(Settings(ingest: false));
        await using var subscriber = await TestSocket.ConnectAsync(subscriberHost.RealtimeUriWithKey(RelayServer.Key));
        for (var c = 0; c < channels; c++)
        {
            Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = $"ing:{c}" })).GetProperty("type").GetString());
        }

        var ingestHost = await RelayServer.StartAsync(Settings(ingest: true));
        RelayServer? restarted = null;
        try
        {
            // Records at about 2,000 a second; a channel's records all go to one partition, half named by key and
            // half by the channel header (their keys then name no channel at all).
            var produced = Task.Run(() => ProduceAsync(kafka, topic, channels, perChannel));
            var received = new Dictionary<string, List<long>>();
            var seqs = new Dictionary<string, List<long>>();
            var total = 0;

            async Task ReceiveUntilAsync(int count)
            {
                while (total < count)
                {
                    var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(30));
                    var channel = message.GetProperty("channel").GetString()!;
                    (received.TryGetValue(channel, out var list) ? list : received[channel] = []).Add(message.GetProperty("data").GetProperty("n").GetInt64());
                    (seqs.TryGetValue(channel, out var seqList) ? seqList : seqs[channel] = []).Add(message.GetProperty("seq").GetInt64());
                    total++;
                }
            }

            await ReceiveUntilAsync(channels * perChannel / 3).WaitAsync(Timeout);

            // Stopped mid-stream: the consumer leaves the group with what it committed. Then its committed offsets go
            // back to the start, as if it had died after routing took the records but before it committed: every
            // record comes again, and only routing's dedupe (the id made of topic, partition and offset) stands
            // between them and the subscribers.
            await ingestHost.DisposeAsync();
            ingestHost = null;
            Assert.True(total < channels * perChannel, "the stream ended before the ingest host was stopped");
            RewindGroup(kafka, topic, 3);
            restarted = await RelayServer.StartAsync(Settings(ingest: true));

            await produced.WaitAsync(Timeout);
            await ReceiveUntilAsync(channels * perChannel).WaitAsync(Timeout);

            // Nothing more comes: a second copy of any record would arrive here.
            await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(3)));
            for (var c = 0; c < channels; c++)
            {
                var channel = $"ing:{c}";
                Assert.Equal(Enumerable.Range(0, perChannel).Select(static n => (long)n), received[channel]);
                Assert.Equal(Enumerable.Range(1, perChannel).Select(static n => (long)n), seqs[channel]);
            }
        }
        finally
        {
            if (ingestHost is not null)
            {
                await ingestHost.DisposeAsync();
            }

            if (restarted is not null)
            {
                await restarted.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Ingest_BadRecordsAmongGoodAtRate_CountedAndSkippedWithoutStallingThePartition()
    {
        const string topic = "ingest-bad";
        const int good = 1000;
        using var kafka = KafkaMockCluster.Start();
        kafka.CreateTopic(topic, 1);
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Kafka:BootstrapServers"] = kafka.BootstrapServers,
            ["Relay:Kafka:IngestTopics:0"] = topic,
            ["Relay:Kafka:IngestGroupId"] = Group,
            ["Relay:Kafka:IngestApp"] = RelayServer.AppId,
            ["Relay:Kafka:IngestMaxMessageBytes"] = "1024",
        });
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "good" });
        Assert.True(subscribed.GetProperty("type").GetString() == "ok", subscribed.ToString());

        // After every fifth good record, one bad one of each kind in turn: no channel, a bad channel name, too large.
        var bad = new Dictionary<string, int> { ["no_channel"] = 0, ["bad_channel"] = 0, ["too_large"] = 0 };
        using (var producer = new ProducerBuilder<string?, byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            for (var i = 0; i < good; i++)
            {
                producer.Produce(topic, new Message<string?, byte[]> { Key = "good", Value = Encoding.UTF8.GetBytes($$"""{"n":{{i}}}""") });
                if (i % 5 == 4)
                {
                    var kind = (i / 5) % 3;
                    producer.Produce(topic, kind switch
                    {
                        0 => new Message<string?, byte[]> { Key = null, Value = "{}"u8.ToArray() },
                        1 => new Message<string?, byte[]> { Key = "bad/+/channel", Value = "{}"u8.ToArray() },
                        _ => new Message<string?, byte[]> { Key = "good", Value = Encoding.UTF8.GetBytes($$"""{"pad":"{{new string('x', 2000)}}"}""") },
                    });
                    bad[kind switch { 0 => "no_channel", 1 => "bad_channel", _ => "too_large" }]++;
                }
            }

            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        }

        for (var i = 0; i < good; i++)
        {
            var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(i, message.GetProperty("data").GetProperty("n").GetInt32());
        }

        await Assert.ThrowsAsync<TimeoutException>(() => subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(2)));

        // Every bad record was counted under its reason, and the partition's committed offset reached its end.
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        var metrics = await http.GetStringAsync(new Uri("metrics", UriKind.Relative));
        foreach (var (reason, count) in bad)
        {
            Assert.Equal(count, Sample(metrics, "relay_kafka_ingest_errors_total", $"reason=\"{reason}\""));
        }

        using var reader = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig { BootstrapServers = kafka.BootstrapServers, GroupId = Group }).Build();
        var end = good + bad.Values.Sum();
        var committed = -1L;
        var deadline = Stopwatch.StartNew();
        while (committed != end && deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            committed = reader.Committed([new TopicPartition(topic, 0)], TimeSpan.FromSeconds(10))[0].Offset.Value;
            await Task.Delay(100);
        }

        Assert.Equal(end, committed);

        // Lag is read after each batch's commit: the last batch left nothing behind it.
        metrics = await http.GetStringAsync(new Uri("metrics", UriKind.Relative));
        Assert.Contains("relay_kafka_ingest_lag{", metrics, StringComparison.Ordinal);
        Assert.Equal(0, Sample(metrics, "relay_kafka_ingest_lag", $"topic=\"{topic}\""));
        Assert.Equal(good, PrometheusText.Value(metrics, "relay_kafka_ingest_published_total"));
    }

    [Fact]
    public async Task Ingest_TopicCreatedAfterStart_RecordsArriveWithinSeconds()
    {
        const string topic = "created-later";
        const int records = 200;
        using var kafka = KafkaMockCluster.Start();
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Kafka:BootstrapServers"] = kafka.BootstrapServers,
            ["Relay:Kafka:IngestTopics:0"] = topic,
            ["Relay:Kafka:IngestGroupId"] = Group,
            ["Relay:Kafka:IngestApp"] = RelayServer.AppId,
        });
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "late" });
        Assert.True(subscribed.GetProperty("type").GetString() == "ok", subscribed.ToString());

        // The consumer subscribed to a topic that did not exist; the producer's first request creates it (as a broker
        // with auto-creation does), after ingest has looked for it at least once.
        await Task.Delay(TimeSpan.FromSeconds(2));
        using (var producer = new ProducerBuilder<string?, byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers }).Build())
        {
            for (var i = 0; i < records; i++)
            {
                producer.Produce(topic, new Message<string?, byte[]> { Key = "late", Value = Encoding.UTF8.GetBytes($$"""{"n":{{i}}}""") });
            }

            Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
        }

        for (var i = 0; i < records; i++)
        {
            var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(i, message.GetProperty("data").GetProperty("n").GetInt32());
        }
    }

    private static async Task ProduceAsync(KafkaMockCluster kafka, string topic, int channels, int perChannel)
    {
        using var producer = new ProducerBuilder<string?, byte[]>(new ProducerConfig { BootstrapServers = kafka.BootstrapServers, LingerMs = 5 }).Build();
        for (var n = 0; n < perChannel; n++)
        {
            for (var c = 0; c < channels; c++)
            {
                var channel = $"ing:{c}";
                var byHeader = n % 2 == 1;
                var message = new Message<string?, byte[]>
                {
                    Key = byHeader ? $"device-{c}" : channel,
                    Value = Encoding.UTF8.GetBytes($$"""{"n":{{n}}}"""),
                    Headers = byHeader ? new Headers { { KafkaHeaders.Channel, Encoding.UTF8.GetBytes(channel) } } : null,
                };
                producer.Produce(new TopicPartition(topic, c % 3), message);
            }

            if (n % 10 == 9)
            {
                await Task.Delay(30);
            }
        }

        Assert.Equal(0, producer.Flush(TimeSpan.FromSeconds(30)));
    }

    /// <summary>Joins the ingest group while no ingest runs and commits offset 0 on every partition.</summary>
    private static void RewindGroup(KafkaMockCluster kafka, string topic, int partitions)
    {
        using var consumer = new ConsumerBuilder<Ignore, Ignore>(new ConsumerConfig
        {
            BootstrapServers = kafka.BootstrapServers,
            GroupId = Group,
            EnableAutoCommit = false,
            SessionTimeoutMs = 3000,
        }).Build();
        consumer.Subscribe(topic);
        var deadline = Stopwatch.StartNew();
        while (consumer.Assignment.Count < partitions && deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            // Records it reads are left alone: only the commit below counts.
            consumer.Consume(TimeSpan.FromMilliseconds(100));
        }

        Assert.Equal(partitions, consumer.Assignment.Count);
        var offsets = Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, 0)).ToList();
        consumer.Commit(offsets);
        Assert.All(consumer.Committed(offsets.Select(static o => o.TopicPartition), TimeSpan.FromSeconds(10)), static o => Assert.Equal(0, o.Offset.Value));
        consumer.Close();
    }

    private static long Sample(string metrics, string name, string label)
    {
        foreach (var line in metrics.Split('\n'))
        {
            if (line.StartsWith(name + "{", StringComparison.Ordinal) && line.Contains(label, StringComparison.Ordinal))
            {
                return long.Parse(line[(line.LastIndexOf('}') + 2)..].Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }
}
