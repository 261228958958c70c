using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Relay.Auth.Keys;
using Relay.Auth.Tokens;
using Relay.Auth.Verification;
using Relay.Auth.Verification.Keys;
using Relay.Auth.Verification.Tokens;

namespace Relay.Auth;

/// <summary>Adds Relay's authentication with token issuing (keys, tokens, JWKS) to a host.</summary>
public static class RelayAuthServiceCollectionExtensions
{
    /// <summary>
    /// Everything <see cref="RelayAuthVerificationServiceCollectionExtensions.AddRelayAuthVerification"/> registers, checked
    /// against this process's signing key, plus the token issuer and its lifetimes (<see cref="RelayTokenIssuingOptions"/>).
    /// Calling it again changes nothing.
    /// </summary>
    public static IServiceCollection AddRelayAuth(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (services.Any(static d => d.ServiceType == typeof(SigningKey)))
        {
            return services;
        }

        services.AddOptions<RelayTokenIssuingOptions>().BindConfiguration(RelayTokenIssuingOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RelayTokenIssuingOptions>, RelayTokenIssuingOptionsValidator>());
        services.TryAddSingleton(static sp => SigningKey.Create(sp.GetRequiredService<IOptions<RelayAuthOptions>>().Value));

        // Tokens are checked against the key that signs them, even where AddRelayAuthVerification() came first.
        services.Replace(ServiceDescriptor.Singleton(static sp => sp.GetRequiredService<SigningKey>().Public));
        services.TryAddSingleton<TokenIssuer>();
        return services.AddRelayAuthVerification();
    }
}
