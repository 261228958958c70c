using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Relay.Bus;
using Relay.Bus.FanOut;
using Relay.Bus.Routing;
using Relay.Functions.Archive;
using Relay.Functions.Calls;
using Relay.Functions.Delivery;
using Relay.Functions.Hooks;
using Relay.Functions.Webhooks;

namespace Relay.Functions;

/// <summary>
/// Adds hooks (beside routing) and webhooks (beside fan-out) to a host; both stay idle until <c>Relay:Functions</c>
/// configures them. Call them after the bus and the services are registered: they decorate what those registered.
/// </summary>
public static class FunctionsServiceCollectionExtensions
{
    /// <summary>
    /// Wraps the registered <see cref="IChannelAuthority"/> (the in-memory one or the Redis bus's) so that publishes
    /// of namespaces with hooks go through them. With no hook configured the authority is served as it is.
    /// </summary>
    public static IServiceCollection AddRelayFunctionHooks(this IServiceCollection services)
    {
        AddCommon(services);
        var original = services.LastOrDefault(static d => d.ServiceType == typeof(IChannelAuthority))
            ?? throw new InvalidOperationException("AddRelayFunctionHooks() wraps routing's channel authority: call it after AddRelayRouting() and AddRelayBus().");
        if (services.Any(static d => d.ServiceType == typeof(HookTable)))
        {
            return services;
        }

        services.TryAddSingleton(static sp => new HookTable(sp.GetRequiredService<IOptions<FunctionsOptions>>().Value));
        services.TryAddSingleton<AfterPublishHooks>();
        services.AddHostedService(static sp => sp.GetRequiredService<AfterPublishHooks>());
        services.Replace(ServiceDescriptor.Singleton<IChannelAuthority>(sp =>
        {
            var inner = (IChannelAuthority)Create(sp, original);
            return sp.GetRequiredService<HookTable>().Any ? ActivatorUtilities.CreateInstance<HookedChannelAuthority>(sp, inner) : inner;
        }));
        return services;
    }

    /// <summary>
    /// Webhooks beside fan-out: taps <see cref="ISequencedTap"/> for messages and presence, and, when a webhook asks for
    /// occupancy, wraps the registered <see cref="IRelayBus"/> to see fan-out's interest changes.
    /// </summary>
    public static IServiceCollection AddRelayWebhooks(this IServiceCollection services)
    {
        AddCommon(services);
        if (services.Any(static d => d.ServiceType == typeof(WebhookDispatcher)))
        {
            return services;
        }

        var original = services.LastOrDefault(static d => d.ServiceType == typeof(IRelayBus))
            ?? throw new InvalidOperationException("AddRelayWebhooks() watches the bus fan-out is served on: call it after AddRelayBus().");
        services.TryAddSingleton<WebhookDispatcher>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISequencedTap, WebhookDispatcher>(static sp => sp.GetRequiredService<WebhookDispatcher>()));
        services.AddHostedService(static sp => sp.GetRequiredService<WebhookDispatcher>());
        services.TryAddSingleton<OccupancyTracker>();
        services.Replace(ServiceDescriptor.Singleton<IRelayBus>(sp =>
        {
            var inner = (IRelayBus)Create(sp, original);
            return sp.GetRequiredService<WebhookDispatcher>().WantsOccupancy ? new OccupancyBus(inner, sp.GetRequiredService<OccupancyTracker>()) : inner;
        }));
        return services;
    }

    /// <summary>
    /// The S3 history archive beside fan-out (it taps <see cref="ISequencedTap"/>): on when
    /// <c>Relay:Functions:Archive:Bucket</c> is set.
    /// </summary>
    public static IServiceCollection AddRelayHistoryArchive(this IServiceCollection services)
    {
        AddCommon(services);
        services.TryAddSingleton<HistoryArchiver>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISequencedTap, HistoryArchiver>(static sp => sp.GetRequiredService<HistoryArchiver>()));
        services.AddHostedService(static sp => sp.GetRequiredService<HistoryArchiver>());
        return services;
    }

    /// <summary>The archive as a function, for the Lambda app (<see cref="ArchiveFunction"/>): writes after-publish bodies to S3.</summary>
    public static IServiceCollection AddRelayArchiveFunction(this IServiceCollection services)
    {
        AddCommon(services);
        return services;
    }

    private static void AddCommon(IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (services.Any(static d => d.ServiceType == typeof(FunctionsMetrics)))
        {
            return;
        }

        // Once per host: a second binding would append the webhooks to the list a second time.
        services.AddOptions<FunctionsOptions>().BindConfiguration(FunctionsOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<FunctionsOptions>, FunctionsOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<FunctionsMetrics>();
        services.TryAddSingleton<DeadLetters>();
        services.TryAddSingleton<LambdaInvoker>();
        services.TryAddSingleton<FunctionCaller>();
        services.TryAddSingleton<ArchiveWriter>();
        services.AddHostedService<FunctionsStartupCheck>();
    }

    private static object Create(IServiceProvider services, ServiceDescriptor descriptor) =>
        descriptor.ImplementationInstance
        ?? descriptor.ImplementationFactory?.Invoke(services)
        ?? ActivatorUtilities.CreateInstance(services, descriptor.ImplementationType!);
}
