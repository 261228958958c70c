using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Relay.Bus.FanOut;

namespace Relay.Kafka;

/// <summary>Adds the Kafka firehose and ingest to a host; both stay idle until <c>Relay:Kafka</c> configures them.</summary>
public static class KafkaServiceCollectionExtensions
{
    /// <summary>The firehose, beside fan-out (it taps <see cref="ISequencedTap"/>): on when <c>Relay:Kafka:FirehoseTopic</c> is set.</summary>
    public static IServiceCollection AddRelayKafkaFirehose(this IServiceCollection services)
    {
        AddKafkaOptions(services);
        services.TryAddSingleton<KafkaFirehose>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISequencedTap, KafkaFirehose>(static sp => sp.GetRequiredService<KafkaFirehose>()));
        services.AddHostedService(static sp => sp.GetRequiredService<KafkaFirehose>());
        return services;
    }

    /// <summary>Ingest, in a host with a bus to routing: on when <c>Relay:Kafka:IngestTopics</c> is set.</summary>
    public static IServiceCollection AddRelayKafkaIngest(this IServiceCollection services)
    {
        AddKafkaOptions(services);
        services.TryAddSingleton<KafkaIngest>();
        services.AddHostedService(static sp => sp.GetRequiredService<KafkaIngest>());
        return services;
    }

    private static void AddKafkaOptions(IServiceCollection services)
    {
        // Once per host: a second binding would append the topics to the list a second time.
        if (services.Any(static d => d.ServiceType == typeof(KafkaMetrics)))
        {
            return;
        }

        services.AddOptions<KafkaOptions>().BindConfiguration(KafkaOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<KafkaOptions>, KafkaOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<KafkaMetrics>();
    }
}
