using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Relay.Bus.Dapr;
using Relay.Testing;

namespace Relay.Bus.Redis.Tests.Contract;

/// <summary>
/// The contract on the Dapr bus: each of the two processes is an app beside a sidecar stand-in of its own (as daprd runs
/// beside every pod), over one real redis-server (channel state and the stand-ins' topics). The serving app tells its
/// sidecar its subscriptions once its roles are registered, as daprd reads <c>GET /dapr/subscribe</c> once the app
/// listens. Each test gets app ids and topics of its own, so no consumer group or topic of an earlier test meets it.
/// </summary>
public sealed class DaprBusContractTests(RedisServerFixture redis) : RelayBusContract, IClassFixture<RedisServerFixture>
{
    private static int s_database;
    private readonly List<IAsyncDisposable> _made = [];
    private DaprSidecar? _servingSidecar;
    private Uri? _servingApp;

    protected override async Task<(IRelayBus Serving, IRelayBus Calling)> CreateBusesAsync()
    {
        var run = "contract-" + Guid.NewGuid().ToString("N")[..8];
        var database = (Interlocked.Increment(ref s_database) % 15) + 1;
        _servingSidecar = await DaprSidecar.StartAsync(run, redis.Server.Configuration);
        _made.Add(_servingSidecar);
        var callingSidecar = await DaprSidecar.StartAsync(run + "-caller", redis.Server.Configuration);
        _made.Add(callingSidecar);
        (var serving, _servingApp) = await StartAppAsync(_servingSidecar, routingAppId: run, topicPrefix: run, database);
        var (calling, _) = await StartAppAsync(callingSidecar, routingAppId: run, topicPrefix: run, database);
        return (serving, calling);
    }

    protected override async Task ServingRegisteredAsync() => await _servingSidecar!.AttachAppAsync(_servingApp!);

    protected override async Task ReleaseBusesAsync()
    {
        // Apps first (a stopping app still publishes through its sidecar), then the sidecars.
        for (var i = _made.Count - 1; i >= 0; i--)
        {
            await _made[i].DisposeAsync();
        }
    }

    private async Task<(DaprBus Bus, Uri Address)> StartAppAsync(DaprSidecar sidecar, string routingAppId, string topicPrefix, int database)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Relay:Bus"] = "dapr",
            ["Relay:Redis:Configuration"] = redis.Server.Configuration + ",defaultDatabase=" + database,
            ["Relay:Redis:LeaseTtl"] = "00:00:02",
            ["Relay:Dapr:HttpEndpoint"] = sidecar.HttpEndpoint.ToString(),
            ["Relay:Dapr:RoutingAppId"] = routingAppId,
            ["Relay:Dapr:FanOutAppId"] = routingAppId,
            ["Relay:Dapr:TopicPrefix"] = topicPrefix,
        });
        builder.Services.AddRouting();
        builder.Services.AddRelayBus().AddDapr();
        var app = builder.Build();
        app.MapRelayDaprBus();
        await app.StartAsync();
        _made.Add(app);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return (app.Services.GetRequiredService<DaprBus>(), new Uri(address.TrimEnd('/') + "/"));
    }
}
