using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Relay.Bus.FanOut;

namespace Relay.Amqp;

/// <summary>Adds the AMQP bridge to a host; both directions stay idle until <c>Relay:Amqp</c> configures them.</summary>
public static class AmqpServiceCollectionExtensions
{
    /// <summary>Outbound, beside fan-out (it taps <see cref="ISequencedTap"/>): on when <c>Relay:Amqp:Exchange</c> is set.</summary>
    public static IServiceCollection AddRelayAmqpOutbound(this IServiceCollection services)
    {
        AddAmqpOptions(services);
        services.TryAddSingleton<AmqpOutbound>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISequencedTap, AmqpOutbound>(static sp => sp.GetRequiredService<AmqpOutbound>()));
        services.AddHostedService(static sp => sp.GetRequiredService<AmqpOutbound>());
        return services;
    }

    /// <summary>Inbound, in a host with a bus to routing: on when <c>Relay:Amqp:Queue</c> is set.</summary>
    public static IServiceCollection AddRelayAmqpInbound(this IServiceCollection services)
    {
        AddAmqpOptions(services);
        services.TryAddSingleton<AmqpInbound>();
        services.AddHostedService(static sp => sp.GetRequiredService<AmqpInbound>());
        return services;
    }

    private static void AddAmqpOptions(IServiceCollection services)
    {
        // Once per host: a second binding would append the channel patterns and binding keys a second time.
        if (services.Any(static d => d.ServiceType == typeof(AmqpMetrics)))
        {
            return;
        }

        services.AddOptions<AmqpOptions>().BindConfiguration(AmqpOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<AmqpOptions>, AmqpOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<AmqpMetrics>();
    }
}
