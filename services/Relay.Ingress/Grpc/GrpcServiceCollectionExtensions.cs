using Grpc.AspNetCore.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Relay.ServiceDefaults;

namespace Relay.Ingress.Grpc;

/// <summary>Adds the gRPC API (<c>relay.v1</c>) to the ingress node: its own HTTP/2 port, gRPC-Web, reflection and health.</summary>
public static class GrpcServiceCollectionExtensions
{
    /// <summary>Registers the gRPC options (<c>Relay:Grpc</c>), the services and, when enabled, the gRPC endpoint.</summary>
    public static IServiceCollection AddRelayGrpc(this IServiceCollection services)
    {
        services.AddOptions<GrpcOptions>().BindConfiguration(GrpcOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<GrpcOptions>, GrpcOptionsValidator>());
        services.AddGrpc();
        services.AddOptions<GrpcServiceOptions>().Configure<IOptions<GrpcOptions>>(static (grpc, relay) =>
        {
            grpc.MaxReceiveMessageSize = relay.Value.MaxReceiveMessageBytes;
            grpc.EnableDetailedErrors = false;
        });
        services.AddGrpcReflection();

        // The standard health service answers as /readyz does: SERVING while every readiness check passes.
        services.AddGrpcHealthChecks(static options =>
        {
            options.Services.Map(string.Empty, static check => check.Tags.Contains(ServiceDefaultsExtensions.ReadyTag));
            options.Services.Map("relay.v1.Realtime", static check => check.Tags.Contains(ServiceDefaultsExtensions.ReadyTag));
        });
        services.TryAddSingleton<GrpcStreams>();
        services.AddHostedService(static sp => sp.GetRequiredService<GrpcStreams>());
        services.TryAddSingleton<GrpcEndpoint>();
        services.AddSingleton<IConfigureOptions<KestrelServerOptions>>(static sp => sp.GetRequiredService<GrpcEndpoint>());
        services.AddSingleton<IStartupFilter, GrpcAddress>();
        return services;
    }

    /// <summary>Maps <c>relay.v1.Realtime</c>, the health service and reflection, and gRPC-Web for them, when gRPC is enabled.</summary>
    public static IEndpointRouteBuilder MapRelayGrpc(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        var options = endpoints.ServiceProvider.GetRequiredService<IOptions<GrpcOptions>>().Value;
        if (!options.Enabled)
        {
            return endpoints;
        }

        if (endpoints is IApplicationBuilder app)
        {
            // Before gRPC-Web's middleware: its base64 reader fails a body that is not base64 in a way Kestrel then logs, and
            // a unary call's text body is decoded once, here, and handed on decoded (GrpcCheckedBody).
            app.UseMiddleware<GrpcUnaryFraming>();
            if (options.Web)
            {
                app.UseGrpcWeb(new GrpcWebOptions { DefaultEnabled = true });
            }
        }

        endpoints.MapGrpcService<GrpcService>();
        endpoints.MapGrpcHealthChecksService();
        if (options.Reflection)
        {
            endpoints.MapGrpcReflectionService();
        }

        return endpoints;
    }
}
