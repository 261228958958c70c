using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Relay.Bus;
using Relay.Core.Protocol;
using Relay.Ingress.Connections;
using Relay.Ingress.Grpc;
using Relay.Ingress.Http;
using Relay.Ingress.Mqtt;
using Relay.Ingress.Pusher;
using Relay.Ingress.Realtime;
using Relay.Ingress.Sse;
using Relay.ServiceDefaults;
using Relay.ServiceDefaults.Tls;

namespace Relay.Ingress;

/// <summary>Adds the ingress service (client protocols, connections, the local subscription index) to a host.</summary>
public static class IngressServiceCollectionExtensions
{
    /// <summary>Registers the ingress node and its options (<c>Relay:Ingress</c>). Needs <c>AddRelayAuthVerification()</c> (or <c>AddRelayAuth()</c>, which includes it) for credentials.</summary>
    public static IServiceCollection AddRelayIngress(this IServiceCollection services)
    {
        services.AddOptions<IngressOptions>().BindConfiguration(IngressOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<IngressOptions>, IngressOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.AddRelayNamespaces();
        services.AddRelayTls();
        services.AddRelayBus();
        services.TryAddSingleton<IngressNode>();
        services.TryAddSingleton<RefusalLog>();

        // Token requests and the JWKS go to the auth service (Relay:Ingress:AuthUrl) on nodes that follow it, presenting
        // this node's internal certificate (Relay:InternalTls) when it has one.
        services.AddHttpClient(AuthForwarder.HttpClientName, static (sp, client) =>
        {
            var options = sp.GetRequiredService<IOptions<IngressOptions>>().Value;
            if (!string.IsNullOrWhiteSpace(options.AuthUrl))
            {
                // A base without its trailing slash would lose its last segment when v1/tokens is resolved against it.
                client.BaseAddress = new Uri(options.AuthUrl.EndsWith('/') ? options.AuthUrl : options.AuthUrl + "/");
            }

            client.Timeout = options.AuthTimeout;
        }).ConfigurePrimaryHttpMessageHandler(static sp => sp.GetRequiredService<InternalTls>().CreateHandler()).RemoveAllLoggers();
        services.AddHostedService(static sp => sp.GetRequiredService<IngressNode>());
        services.TryAddSingleton<ConnectionGate>();
        services.AddHostedService(static sp => sp.GetRequiredService<ConnectionGate>());
        services.AddHealthChecks().Add(new HealthCheckRegistration("connections", static sp => sp.GetRequiredService<ConnectionGate>(), failureStatus: null, tags: [ServiceDefaultsExtensions.ReadyTag]));

        // The two ways a realtime connection comes in: Relay's own transport takes plain upgrades at accept
        // (RealtimeListenerFactory); everything else reaches Kestrel and ASP.NET Core's WebSocket (RealtimeEndpoint).
        // Registered after Kestrel's socket transport, so Kestrel asks them first (the last registered first): Relay's
        // own transport binds IP endpoints when OwnTransport is on; every other socket endpoint gets Kestrel's
        // transport behind the connection cap.
        services.AddSingleton<IConnectionListenerFactory, GatedListenerFactory>();
        services.AddSingleton<RealtimeListenerFactory>();
        services.AddSingleton<IConnectionListenerFactory>(static sp => sp.GetRequiredService<RealtimeListenerFactory>());

        // MQTT (Relay:Mqtt): TCP beside Kestrel and WebSocket at /mqtt, on the same node, channels and capabilities.
        services.AddRelayMqtt();

        // Pusher Channels (Relay:Pusher): WebSocket at /app/{key} and the HTTP API at /apps/{app_id}, on the same channels.
        services.AddRelayPusher();

        // gRPC (Relay:Grpc): relay.v1 on an HTTP/2 port of its own and gRPC-Web on the HTTP port, on the same node.
        services.AddRelayGrpc();
        return services;
    }

    /// <summary>
    /// Maps <c>/v1/realtime</c> (WebSocket), <c>/v1/sse</c> and the channel HTTP API, and adds the WebSocket middleware; with
    /// <c>Relay:Ingress:AuthUrl</c>, also <c>POST /v1/tokens</c> and <c>GET /.well-known/jwks.json</c>, passed to the auth service.
    /// </summary>
    public static IEndpointRouteBuilder MapRelayIngress(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints is IApplicationBuilder app)
        {
            app.UseWebSockets();

            // A path under /v1 that no endpoint serves answers as the rest of the API does: 404 with 40400 in JSON
            // (the routing middleware leaves it bodyless).
            app.Use(static async (context, next) =>
            {
                await next(context).ConfigureAwait(false);
                if (context.Response is { HasStarted: false, StatusCode: StatusCodes.Status404NotFound, ContentLength: null, ContentType: null }
                    && context.GetEndpoint() is null && context.Request.Path.StartsWithSegments("/v1", StringComparison.Ordinal))
                {
                    await RelayErrorResult.WriteAsync(context.Response, new RelayError(ErrorCodes.NotFound, $"no endpoint {context.Request.Path} in Relay's API: see docs/protocol.md")).ConfigureAwait(false);
                }
            });
        }

        RealtimeEndpoint.Map(endpoints);
        ChannelsApi.Map(endpoints);
        SseEndpoint.Map(endpoints);
        endpoints.MapRelayMqtt();
        endpoints.MapRelayPusher();
        endpoints.MapRelayGrpc();
        if (!string.IsNullOrWhiteSpace(endpoints.ServiceProvider.GetRequiredService<IOptions<IngressOptions>>().Value.AuthUrl))
        {
            AuthForwarder.Map(endpoints);
        }

        return endpoints;
    }
}
