using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>
/// One real server on the Dapr bus, shared by a test class: <see cref="ServerFixture"/>'s settings plus
/// <c>Relay:Bus=dapr</c>, its sidecar a <see cref="DaprSidecar"/> stand-in, and a redis-server of its own under both
/// (channel state, and the stand-in's topics).
/// </summary>
public class DaprBusServerFixture : IServerFixture, IAsyncLifetime
{
    /// <summary>The standalone host is every service at once: one app id for all of them.</summary>
    public const string AppId = "relay";

    private readonly RedisBusFixture _redis = new();
    private RelayServer? _server;
    private DaprSidecar? _sidecar;

    public RelayServer Server => _server ?? throw new InvalidOperationException("The fixture has not started.");

    public DaprSidecar Sidecar => _sidecar ?? throw new InvalidOperationException("The fixture has not started.");

    public RedisServer Redis => _redis.Redis;

    /// <summary>The settings that put a Relay on the Dapr bus beside <paramref name="sidecar"/>, over <paramref name="redis"/>.</summary>
    public static void AddTo(IDictionary<string, string?> settings, DaprSidecar sidecar, RedisServer redis)
    {
        settings["Relay:Bus"] = "dapr";
        settings["Relay:Redis:Configuration"] = redis.Configuration;
        settings["Relay:Redis:LeaseTtl"] = "00:00:02";
        settings["Relay:Dapr:HttpEndpoint"] = sidecar.HttpEndpoint.ToString();
        settings["Relay:Dapr:RoutingAppId"] = sidecar.AppId;
        settings["Relay:Dapr:FanOutAppId"] = sidecar.AppId;
    }

    /// <summary>Sets the stand-in's knobs before the server starts (none: deliveries once each, in order).</summary>
    protected virtual void Configure(DaprSidecar sidecar)
    {
    }

    public async Task InitializeAsync()
    {
        await _redis.InitializeAsync();
        try
        {
            _sidecar = await DaprSidecar.StartAsync(AppId, _redis.Redis.Configuration);
            Configure(_sidecar);
            var settings = ServerFixture.Settings();
            AddTo(settings, _sidecar, _redis.Redis);
            _server = await RelayServer.StartAsync(settings);
            await _sidecar.AttachAppAsync(_server.BaseAddress);
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    public async Task DisposeAsync()
    {
        try
        {
            if (_server is not null)
            {
                await _server.DisposeAsync();
            }

            if (_sidecar is not null)
            {
                await _sidecar.DisposeAsync();
            }
        }
        finally
        {
            await _redis.DisposeAsync();
        }
    }
}

/// <summary>The Dapr bus with a stand-in that posts every delivery twice and shuffles deliveries within windows of 8.</summary>
public sealed class DaprRedeliveringServerFixture : DaprBusServerFixture
{
    protected override void Configure(DaprSidecar sidecar)
    {
        sidecar.Copies = 2;
        sidecar.ReorderWindow = 8;
    }
}
