using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>
/// A real three-master Redis Cluster (no replicas: nothing here fails over) for one test class, and the settings that put a Relay's bus
/// on it. As <see cref="RedisBusFixture"/>, each class gets its own, so classes running in parallel share nothing.
/// </summary>
public sealed class RedisClusterBusFixture : IRedisBusSettings, IAsyncLifetime
{
    // Short leases, so shards held by the server of a previous test (same Redis) move on within a test's timeouts.
    private const string LeaseTtl = "00:00:02";

    private RedisClusterSet? _cluster;

    public RedisClusterSet Cluster => _cluster ?? throw new InvalidOperationException("The fixture has not started.");

    /// <inheritdoc />
    public void AddTo(IDictionary<string, string?> settings)
    {
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Configuration"] = Cluster.Configuration;
        settings["Relay:Redis:LeaseTtl"] = LeaseTtl;
    }

    public async Task InitializeAsync() => _cluster = await RedisClusterSet.StartAsync();

    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }
}
