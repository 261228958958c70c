using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>
/// A redis-server for one test class whose specs start a server per test (<c>StartServerAsync</c>), and the Dapr bus
/// for each of those servers: every server gets a <see cref="DaprSidecar"/> stand-in of its own, with an app id of its
/// own (so a test never gets the consumer groups, topics or routing of an earlier test's server), attached once the
/// server listens (as daprd waits for the app's port) and stopped once the server has stopped.
/// </summary>
public class DaprBusFixture : IAsyncLifetime
{
    private readonly RedisBusFixture _redis = new();
    private readonly ConcurrentQueue<Task> _stopping = new();

    public RedisServer Redis => _redis.Redis;

    /// <summary>
    /// Settings that put a server on the Dapr bus before it has a sidecar (<see cref="StartServerAsync"/> replaces the
    /// sidecar's address and app ids with a real one's): enough for a server that must fail its start-up checks first.
    /// </summary>
    public void AddTo(IDictionary<string, string?> settings)
    {
        settings["Relay:Bus"] = "dapr";
        settings["Relay:Redis:Configuration"] = Redis.Configuration;
        settings["Relay:Redis:LeaseTtl"] = "00:00:02";
        settings["Relay:Dapr:HttpEndpoint"] = "http://127.0.0.1:3500/";
    }

    /// <summary>Starts a sidecar stand-in, then the server beside it with <paramref name="settings"/>, then attaches them.</summary>
    public async Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings, Action<IServiceCollection>? services = null)
    {
        var sidecar = await DaprSidecar.StartAsync("relay-" + Guid.NewGuid().ToString("N")[..8], Redis.Configuration);
        Configure(sidecar);
        DaprBusServerFixture.AddTo(settings, sidecar, Redis);

        // Topics of its own too: a stand-in's consumer group starts at a topic's beginning, and an earlier test's
        // messages on a shared topic would reach this server's fan-out.
        settings["Relay:Dapr:TopicPrefix"] = sidecar.AppId;
        RelayServer server;
        try
        {
            server = await RelayServer.StartAsync(settings, services);
        }
        catch
        {
            await sidecar.DisposeAsync();
            throw;
        }

        // The sidecar outlives its app's stop (a stopping node still publishes its interest going away), no longer.
        server.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopped.Register(
            () => _stopping.Enqueue(Task.Run(async () => await sidecar.DisposeAsync())));
        await sidecar.AttachAppAsync(server.BaseAddress);
        return server;
    }

    /// <summary>Sets the stand-in's knobs before its server starts (none: deliveries once each, in order).</summary>
    protected virtual void Configure(DaprSidecar sidecar)
    {
    }

    public Task InitializeAsync() => _redis.InitializeAsync();

    public async Task DisposeAsync()
    {
        try
        {
            await Task.WhenAll(_stopping).WaitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            await _redis.DisposeAsync();
        }
    }
}

/// <summary>
/// <see cref="DaprBusFixture"/> with stand-ins that post every delivery twice and shuffle deliveries within windows of
/// 8, as Dapr pub/sub may (at least once, unordered).
/// </summary>
public sealed class DaprRedeliveringBusFixture : DaprBusFixture
{
    protected override void Configure(DaprSidecar sidecar)
    {
        sidecar.Copies = 2;
        sidecar.ReorderWindow = 8;
    }
}
