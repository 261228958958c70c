using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification;
using Relay.Bus.FanOut;

namespace Relay.Pusher;

/// <summary>Registers the Pusher options and the apps' webhooks (<see cref="PusherWebhooks"/>) in a host.</summary>
public static class PusherWebhookServiceCollectionExtensions
{
    /// <summary>
    /// Binds <c>Relay:Pusher</c> (validated at start-up) and registers the webhooks: told by the host's own code
    /// (client events, cache misses on an ingress node) and, where the host serves fan-out, by fan-out's taps (occupancy,
    /// members). Their signatures need the apps' keys (<see cref="IRelayKeys"/>), which the host registers.
    /// </summary>
    public static IServiceCollection AddRelayPusherWebhooks(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions<PusherOptions>().BindConfiguration(PusherOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PusherOptions>, PusherOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        if (services.Any(static d => d.ServiceType == typeof(PusherWebhooks)))
        {
            return services;
        }

        services.TryAddSingleton<PusherWebhooks>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISequencedTap, PusherWebhooks>(static sp => sp.GetRequiredService<PusherWebhooks>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IInterestTap, PusherWebhooks>(static sp => sp.GetRequiredService<PusherWebhooks>()));
        services.AddHostedService(static sp => sp.GetRequiredService<PusherWebhooks>());
        return services;
    }

    /// <summary>
    /// For the split fan-out service: when some app has a Pusher webhook (<c>Relay:Pusher:Apps:{appId}:Webhooks</c>), the
    /// webhooks with the key checking half of auth (<c>Relay:Auth</c>: the keys from configuration, or with
    /// <c>KeySource=redis</c> those the auth service published), so occupancy and member events are told from where they
    /// are known. Nothing otherwise: a fan-out service without Pusher webhooks needs no keys.
    /// </summary>
    public static IServiceCollection AddRelayPusherWebhooksWhenConfigured(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var apps = configuration.GetSection(PusherOptions.SectionName).GetSection(nameof(PusherOptions.Apps)).GetChildren();
        if (!apps.Any(static app => app.GetSection(nameof(PusherAppOptions.Webhooks)).GetChildren().Any()))
        {
            return services;
        }

        services.AddRelayAuthVerification();
        return services.AddRelayPusherWebhooks();
    }
}
