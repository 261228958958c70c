using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification.Distributed;
using Relay.Auth.Verification.Keys;
using Relay.Auth.Verification.Tokens;
using Relay.Bus.Redis;
using Relay.ServiceDefaults;

namespace Relay.Auth.Verification;

/// <summary>Adds the checking half of Relay's authentication (keys, token validation, the key directory) to a host.</summary>
public static class RelayAuthVerificationServiceCollectionExtensions
{
    /// <summary>
    /// Binds <c>Relay:Auth</c>, validates it at start-up and registers <see cref="IRelayAuthenticator"/> (a singleton)
    /// with the key store, the token validator, the public key of <c>SigningKeyPath</c> and <see cref="TimeProvider.System"/>
    /// unless a clock is already registered. Nothing here can issue a token. Calling it again changes nothing.
    /// </summary>
    public static IServiceCollection AddRelayAuthVerification(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);

        // Binding twice would append every app twice to the same lists.
        if (services.Any(static d => d.ServiceType == typeof(KeyStore)))
        {
            return services;
        }

        services.AddOptions<RelayAuthOptions>().BindConfiguration(RelayAuthOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RelayAuthOptions>, RelayAuthOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<KeyStore>();

        // A host that issues registered the public half of its signing key first; this one only checks.
        services.TryAddSingleton(static sp => VerificationKey.Create(sp.GetRequiredService<IOptions<RelayAuthOptions>>().Value));
        services.TryAddSingleton<TokenValidator>();
        services.TryAddSingleton<IRelayAuthenticator, RelayAuthenticator>();
        services.TryAddSingleton<IRelayKeys, RelayKeys>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, RelayAuthStartup>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, KeyReloader>());

        // Distributed mode: publish configured keys to the bus's key directory (AddRelayBus().AddRedis()), or follow what the
        // auth service published in Redis.
        services.AddOptions<RedisBusOptions>().BindConfiguration(RedisBusOptions.SectionName);
        services.TryAddSingleton<RedisConnector>();
        services.TryAddSingleton<RedisKeyFollower>();
        services.AddHostedService(static sp => sp.GetRequiredService<RedisKeyFollower>());
        services.AddHostedService<KeyDirectoryPublisher>();
        services.AddHealthChecks().AddCheck<RedisKeyFollower>("auth-keys", tags: [ServiceDefaultsExtensions.ReadyTag]);
        return services;
    }
}
