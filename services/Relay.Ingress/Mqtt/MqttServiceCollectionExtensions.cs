using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Relay.Ingress.Mqtt;

/// <summary>Adds MQTT (TCP and WebSocket) to the ingress node.</summary>
public static class MqttServiceCollectionExtensions
{
    /// <summary>Registers the MQTT options (<c>Relay:Mqtt</c>), the connection handler and, when enabled, the TCP listener.</summary>
    public static IServiceCollection AddRelayMqtt(this IServiceCollection services)
    {
        services.AddOptions<MqttOptions>().BindConfiguration(MqttOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<MqttOptions>, MqttOptionsValidator>());
        services.TryAddSingleton<MqttBroker>();
        services.TryAddSingleton<MqttConnectionHandler>();
        services.TryAddSingleton(static sp => new MqttListener(
            sp.GetRequiredService<IOptions<MqttOptions>>(),
            sp.GetRequiredService<IOptions<Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets.SocketTransportOptions>>(),
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>(),
            sp.GetRequiredService<Connections.ConnectionGate>(),
            sp.GetRequiredService<MqttConnectionHandler>(),
            sp.GetService<Relay.ServiceDefaults.Tls.ServerCertificate>(),
            sp.GetRequiredService<IOptions<Relay.ServiceDefaults.Tls.TlsOptions>>(),
            sp.GetRequiredService<IOptions<IngressOptions>>(),
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<MqttListener>>()));
        services.AddHostedService(static sp => new EnabledOnly(sp));
        return services;
    }

    /// <summary>Maps MQTT over WebSocket at <c>/mqtt</c> when MQTT is enabled.</summary>
    public static IEndpointRouteBuilder MapRelayMqtt(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetRequiredService<IOptions<MqttOptions>>().Value.Enabled)
        {
            MqttWebSocketEndpoint.Map(endpoints);
        }

        return endpoints;
    }

    /// <summary>Starts the TCP listener only when <c>Relay:Mqtt:Enabled</c> (read at start, after options are validated).</summary>
    private sealed class EnabledOnly(IServiceProvider services) : Microsoft.Extensions.Hosting.IHostedService
    {
        private MqttListener? _listener;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            if (!services.GetRequiredService<IOptions<MqttOptions>>().Value.Enabled)
            {
                return Task.CompletedTask;
            }

            _listener = services.GetRequiredService<MqttListener>();
            return _listener.StartAsync(cancellationToken);
        }

        public Task StopAsync(CancellationToken cancellationToken) => _listener?.StopAsync(cancellationToken) ?? Task.CompletedTask;
    }
}
