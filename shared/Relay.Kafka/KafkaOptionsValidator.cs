using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;

namespace Relay.Kafka;

/// <summary>Checks <see cref="KafkaOptions"/> at start-up.</summary>
internal sealed partial class KafkaOptionsValidator : IValidateOptions<KafkaOptions>
{
    public ValidateOptionsResult Validate(string? name, KafkaOptions options)
    {
        var errors = new List<string>();
        if ((options.FirehoseEnabled || options.IngestEnabled) && string.IsNullOrWhiteSpace(options.BootstrapServers))
        {
            errors.Add("Relay:Kafka:BootstrapServers is required when Relay:Kafka:FirehoseTopic or Relay:Kafka:IngestTopics is set: name the brokers, e.g. 'kafka1:9092,kafka2:9092'.");
        }

        if (options.FirehoseEnabled && !TopicName().IsMatch(options.FirehoseTopic!))
        {
            errors.Add($"Relay:Kafka:FirehoseTopic '{options.FirehoseTopic}' is not a Kafka topic name (1-249 of [A-Za-z0-9._-]).");
        }

        if (options.FirehoseQueueBytes < 1024 * 1024)
        {
            errors.Add($"Relay:Kafka:FirehoseQueueBytes must be at least 1048576 (1 MiB); it is {options.FirehoseQueueBytes}.");
        }

        if (options.FirehoseMessageTimeout < TimeSpan.FromSeconds(1) || options.FirehoseMessageTimeout > TimeSpan.FromHours(1))
        {
            errors.Add($"Relay:Kafka:FirehoseMessageTimeout must be between 00:00:01 and 01:00:00; it is {options.FirehoseMessageTimeout}.");
        }

        foreach (var topic in options.IngestTopics)
        {
            if (string.IsNullOrEmpty(topic) || !TopicName().IsMatch(topic))
            {
                errors.Add($"Relay:Kafka:IngestTopics holds '{topic}', which is not a Kafka topic name (1-249 of [A-Za-z0-9._-]).");
            }
            else if (topic == options.FirehoseTopic)
            {
                errors.Add($"Relay:Kafka:IngestTopics holds the firehose topic '{topic}': every ingested message would come back through the firehose and be ingested again.");
            }
        }

        if (options.IngestEnabled)
        {
            if (string.IsNullOrWhiteSpace(options.IngestGroupId))
            {
                errors.Add("Relay:Kafka:IngestGroupId is required with Relay:Kafka:IngestTopics: the consumer group whose committed offsets say what was published (e.g. 'relay-ingest').");
            }

            if (string.IsNullOrEmpty(options.IngestApp) || !AppId().IsMatch(options.IngestApp))
            {
                errors.Add($"Relay:Kafka:IngestApp is required with Relay:Kafka:IngestTopics and must be an app id ([A-Za-z0-9_-]{{1,64}}): the app ingested records are published in; it is '{options.IngestApp}'.");
            }

            if (string.IsNullOrWhiteSpace(options.IngestChannelHeader))
            {
                errors.Add("Relay:Kafka:IngestChannelHeader must not be empty: the record header that names the channel (default 'relay-channel').");
            }
        }

        if (options.IngestMaxMessageBytes is < 1 or > 16 * 1024 * 1024)
        {
            errors.Add($"Relay:Kafka:IngestMaxMessageBytes must be between 1 and 16777216; it is {options.IngestMaxMessageBytes}.");
        }

        if (options.IngestSessionTimeout < TimeSpan.FromSeconds(1) || options.IngestSessionTimeout > TimeSpan.FromMinutes(30))
        {
            errors.Add($"Relay:Kafka:IngestSessionTimeout must be between 00:00:01 and 00:30:00 (and within the brokers' group.min/max.session.timeout.ms); it is {options.IngestSessionTimeout}.");
        }

        if (options.IngestBatchSize is < 1 or > 10_000)
        {
            errors.Add($"Relay:Kafka:IngestBatchSize must be between 1 and 10000; it is {options.IngestBatchSize}.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,249}$")]
    private static partial Regex TopicName();

    [GeneratedRegex("^[A-Za-z0-9_-]{1,64}$")]
    private static partial Regex AppId();
}
