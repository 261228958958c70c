using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Relay.Core.Namespaces;

namespace Relay.ServiceDefaults;

/// <summary>Registers the namespace policies that routing and ingress share.</summary>
public static class NamespacesServiceCollectionExtensions
{
    /// <summary>Binds <c>Relay:Namespaces</c>, validates it at start-up and registers <see cref="NamespacePolicies"/>.</summary>
    public static IServiceCollection AddRelayNamespaces(this IServiceCollection services)
    {
        services.AddOptions<NamespacesOptions>().BindConfiguration(NamespacesOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<NamespacesOptions>, NamespacesOptionsValidator>());
        services.TryAddSingleton(static sp => new NamespacePolicies(sp.GetRequiredService<IOptions<NamespacesOptions>>().Value));
        return services;
    }

    private sealed class NamespacesOptionsValidator : IValidateOptions<NamespacesOptions>
    {
        public ValidateOptionsResult Validate(string? name, NamespacesOptions options)
        {
            var failures = NamespacePolicies.Validate(options);
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }
}
