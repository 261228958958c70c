using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Relay.Bus.Redis.Tests.Contract;

/// <summary>
/// The contract on the Redis bus over one real redis-server: two buses with a connection each, as two processes have.
/// Each test gets a database of its own, so the keys (leases, interest) another test left never meet it; the tests of a
/// class run one at a time, so their pub/sub channels (shared by all databases) never meet either.
/// </summary>
public sealed class RedisBusContractTests(RedisServerFixture redis) : RelayBusContract, IClassFixture<RedisServerFixture>
{
    private static int s_database;
    private readonly List<(RedisBus Bus, RedisConnector Connector)> _made = [];

    protected override Task<(IRelayBus Serving, IRelayBus Calling)> CreateBusesAsync()
    {
        // Databases 1-15: one per test of the class (the server has 16).
        var database = (Interlocked.Increment(ref s_database) % 15) + 1;
        return Task.FromResult<(IRelayBus, IRelayBus)>((Make(database), Make(database)));
    }

    protected override async Task ReleaseBusesAsync()
    {
        foreach (var (bus, connector) in _made)
        {
            await bus.DisposeAsync();
            await connector.DisposeAsync();
        }
    }

    private RedisBus Make(int database)
    {
        var options = Options.Create(new RedisBusOptions { Configuration = redis.Server.Configuration + ",defaultDatabase=" + database, LeaseTtl = TimeSpan.FromSeconds(2) });
        var connector = new RedisConnector(options);
        var bus = new RedisBus(options, connector, NullLogger<RedisBus>.Instance);
        _made.Add((bus, connector));
        return bus;
    }
}
