using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Relay.Auth.Distributed;
using Relay.Auth.Keys;
using Relay.Bus.Redis;
using Relay.ServiceDefaults;
using Relay.Auth.Tokens;

namespace Relay.Auth;

/// <summary>Adds Relay's authentication (keys, tokens, JWKS) to a host.</summary>
public static class RelayAuthServiceCollectionExtensions
{
    /// <summary>
    /// Binds <c>Relay:Auth</c>, validates it at start-up and registers <see cref="IRelayAuthenticator"/> (a singleton)
    /// with the key store, the token validator and issuer and <see cref="TimeProvider.System"/> unless a clock is already registered.
    /// Calling it again changes nothing.
    /// </summary>
    public static IServiceCollection AddRelayAuth(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);

        // Binding twice would append every app twice to the same lists.
        if (services.Any(static d => d.ServiceType == typeof(KeyStore)))
        {
            return services;
        }

        services.AddOptions<RelayAuthOptions>().BindConfiguration(RelayAuthOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RelayAuthOptions>, RelayAuthOptionsValidator>());
        services.AddOptions<RelayTokenIssuingOptions>().BindConfiguration(RelayTokenIssuingOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RelayTokenIssuingOptions>, RelayTokenIssuingOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<KeyStore>();
        services.TryAddSingleton(static sp => SigningKey.Create(sp.GetRequiredService<IOptions<RelayAuthOptions>>().Value));
        services.TryAddSingleton(static sp => sp.GetRequiredService<SigningKey>().Public);
        services.TryAddSingleton<TokenValidator>();
        services.TryAddSingleton<TokenIssuer>();
        services.TryAddSingleton<IRelayAuthenticator, RelayAuthenticator>();
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
