using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Relay.Testing;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// Redis buses that stand for separate processes against one test redis-server (each with its own multiplexer), some
/// as Redis users of their own whose rights a test changes with <see cref="AclAsync"/>; disposed with the test.
/// </summary>
internal sealed class TestBuses(RedisServer server, TimeSpan requestTimeout) : IAsyncDisposable
{
    private readonly List<(RedisBus Bus, RedisConnector Connector)> _made = [];

    /// <summary>
    /// A bus connected with the server's configuration plus <paramref name="extra"/> (e.g. <c>,user=…,password=…</c>), on
    /// <paramref name="time"/> (the system clock by default), with <paramref name="fanOutLeaseTtl"/> and <paramref name="nodeTtl"/> when given.
    /// </summary>
    public RedisBus Make(string extra = "", IMeterFactory? meters = null, TimeProvider? time = null, TimeSpan? fanOutLeaseTtl = null, TimeSpan? nodeTtl = null)
    {
        var settings = new RedisBusOptions { Configuration = server.Configuration + extra, LeaseTtl = TimeSpan.FromSeconds(2), RequestTimeout = requestTimeout };
        if (fanOutLeaseTtl is { } ttl)
        {
            settings.FanOutLeaseTtl = ttl;
        }

        if (nodeTtl is { } node)
        {
            settings.NodeTtl = node;
        }

        var options = Options.Create(settings);
        var connector = new RedisConnector(options);
        var bus = new RedisBus(options, connector, NullLogger<RedisBus>.Instance, time, meters);
        _made.Add((bus, connector));
        return bus;
    }

    /// <summary>A bus connected as <paramref name="user"/>, created with every right (until the test takes one away).</summary>
    public async Task<RedisBus> MakeAsUserAsync(string user, string password)
    {
        await AclAsync("ACL", "SETUSER", user, "on", ">" + password, "~*", "&*", "+@all");
        return Make($",user={user},password={password}");
    }

    /// <summary>The services <c>AddRelayBus().AddRedis()</c> registers against <paramref name="server"/> (its stores, as a host gets them; <paramref name="nodeTtl"/>: Relay:Redis:NodeTtl).</summary>
    public static ServiceProvider Registered(RedisServer server, TimeSpan? nodeTtl = null)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().Build());
        services.AddRelayBus().AddRedis(options =>
        {
            options.Configuration = server.Configuration;
            options.NodeTtl = nodeTtl ?? options.NodeTtl;
        });
        return services.BuildServiceProvider();
    }

    /// <summary>Sends an ACL command (or any command answered <c>+OK</c>) to the server.</summary>
    public async Task AclAsync(params string[] command) =>
        Assert.StartsWith("+OK", await RedisCommand.SendAsync(server.Port, command), StringComparison.Ordinal);

    public async ValueTask DisposeAsync()
    {
        foreach (var (bus, connector) in _made)
        {
            await bus.DisposeAsync();
            await connector.DisposeAsync();
        }
    }
}
