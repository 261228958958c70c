using Microsoft.Extensions.Options;
using Relay.Testing;

namespace Relay.Kafka.Tests;

/// <summary><c>Relay:Kafka</c> is checked when the host starts, with messages that say what to write.</summary>
public sealed class KafkaOptionsTests
{
    [Theory]
    [InlineData("Relay:Kafka:FirehoseTopic", "relay-firehose", "Relay:Kafka:BootstrapServers is required")]
    [InlineData("Relay:Kafka:IngestTopics:0", "orders", "Relay:Kafka:IngestGroupId is required")]
    [InlineData("Relay:Kafka:IngestTopics:0", "orders", "Relay:Kafka:IngestApp is required")]
    [InlineData("Relay:Kafka:FirehoseTopic", "no spaces", "is not a Kafka topic name")]
    [InlineData("Relay:Kafka:FirehoseQueueBytes", "1000", "Relay:Kafka:FirehoseQueueBytes must be at least 1048576")]
    public async Task Start_BadKafkaSetting_FailsNamingTheSetting(string key, string value, string message)
    {
        var settings = new Dictionary<string, string?> { [key] = value };
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_IngestTopicIsTheFirehoseTopic_FailsSayingWhy()
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Kafka:BootstrapServers"] = "127.0.0.1:9",
            ["Relay:Kafka:FirehoseTopic"] = "relay",
            ["Relay:Kafka:IngestTopics:0"] = "relay",
            ["Relay:Kafka:IngestGroupId"] = "g",
            ["Relay:Kafka:IngestApp"] = RelayServer.AppId,
        }));
        Assert.Contains("would come back through the firehose", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_NothingConfigured_StartsWithoutKafka()
    {
        await using var server = await RelayServer.StartAsync();
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        Assert.True((await http.GetAsync(new Uri("healthz", UriKind.Relative))).IsSuccessStatusCode);
    }
}
