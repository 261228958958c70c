using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Relay.Testing;
using StackExchange.Redis;

namespace Relay.Bus.Redis.Tests.Contract;

/// <summary>A real three-master Redis Cluster for the contract's tests.</summary>
public sealed class RedisClusterContractFixture : IAsyncLifetime
{
    private RedisClusterSet? _cluster;

    public RedisClusterSet Cluster => _cluster ?? throw new InvalidOperationException("The fixture has not started.");

    public async Task InitializeAsync() => _cluster = await RedisClusterSet.StartAsync();

    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }
}

/// <summary>
/// The contract on the Redis bus over a three-master Redis Cluster: two buses with a connection each. A Cluster has one
/// database, so every test starts on emptied masters.
/// </summary>
public sealed class RedisClusterBusContractTests(RedisClusterContractFixture fixture) : RelayBusContract, IClassFixture<RedisClusterContractFixture>
{
    private readonly List<(RedisBus Bus, RedisConnector Connector)> _made = [];

    protected override async Task<(IRelayBus Serving, IRelayBus Calling)> CreateBusesAsync()
    {
        await using (var connection = await ConnectionMultiplexer.ConnectAsync(fixture.Cluster.Options()))
        {
            foreach (var server in connection.GetServers().Where(static s => !s.IsReplica))
            {
                await server.FlushAllDatabasesAsync();
            }
        }

        return (Make(), Make());
    }

    protected override async Task ReleaseBusesAsync()
    {
        foreach (var (bus, connector) in _made)
        {
            await bus.DisposeAsync();
            await connector.DisposeAsync();
        }
    }

    private RedisBus Make()
    {
        var options = Options.Create(new RedisBusOptions { Configuration = fixture.Cluster.Configuration, LeaseTtl = TimeSpan.FromSeconds(2) });
        var connector = new RedisConnector(options);
        var bus = new RedisBus(options, connector, NullLogger<RedisBus>.Instance);
        _made.Add((bus, connector));
        return bus;
    }
}
