using Relay.Amqp;
using Relay.Auth;
using Relay.Auth.Verification;
using Relay.Bus;
using Relay.Bus.Dapr;
using Relay.Bus.Redis;
using Relay.FanOut;
using Relay.Functions;
using Relay.Ingress;
using Relay.Ingress.Connections;
using Relay.Kafka;
using Relay.Routing;
using Relay.ServiceDefaults;

namespace Relay.Standalone;

/// <summary>All four services on one host, over the in-memory bus unless <c>Relay:Bus</c> is <c>redis</c> or <c>dapr</c>: the embedded default, and what the tests start.</summary>
public static class StandaloneHost
{
    /// <summary>The default address when none is configured (<c>Relay:Standalone:Urls</c>, <c>ASPNETCORE_URLS</c> or <c>--urls</c>).</summary>
    public const string DefaultUrl = "http://localhost:8080";

    /// <summary>Creates the builder with every service registered; <paramref name="configure"/> runs before services are added.</summary>
    public static WebApplicationBuilder CreateBuilder(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
            WebRootPath = Path.Combine(AppContext.BaseDirectory, "wwwroot"),
        });
        if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["ASPNETCORE_URLS"]))
        {
            builder.WebHost.UseUrls(DefaultUrl);
        }

        configure?.Invoke(builder);
        SocketCompletions.Apply(builder.Configuration);
        builder.AddRelayServiceDefaults();
        builder.Services.AddRelayAuth();
        builder.Services.AddRelayRouting();
        builder.Services.AddRelayFanOut();
        builder.Services.AddRelayIngress();
        builder.Services.AddRelayBus().AddRedisWhenConfigured(builder.Configuration).AddDaprWhenConfigured(builder.Configuration);
        builder.Services.AddRelayKafkaFirehose();
        builder.Services.AddRelayKafkaIngest();
        builder.Services.AddRelayAmqpOutbound();
        builder.Services.AddRelayAmqpInbound();

        // After the bus: hooks wrap the channel authority it chose, webhooks watch the bus fan-out is served on.
        builder.Services.AddRelayFunctionHooks();
        builder.Services.AddRelayWebhooks();
        builder.Services.AddRelayHistoryArchive();
        return builder;
    }

    /// <summary>Builds the app and maps every endpoint, plus the try-it page at <c>/</c>.</summary>
    public static WebApplication Build(WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var app = builder.Build();
        app.UseDefaultFiles();
        app.UseStaticFiles();
        app.MapRelayServiceDefaults();
        app.MapRelayAuth();
        app.MapRelayRouting();
        app.MapRelayFanOut();
        app.MapRelayIngress();
        app.MapRelayDaprBus();
        return app;
    }
}
