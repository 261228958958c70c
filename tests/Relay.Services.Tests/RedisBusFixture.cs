using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>
/// A real redis-server for one test class, and the settings that put a Relay's bus on it. Each class gets its own
/// Redis, so spec classes running in parallel never share channels, history or cluster membership.
/// </summary>
public sealed class RedisBusFixture : IRedisBusSettings, IAsyncLifetime
{
    // Short leases, so shards held by the server of a previous test (same Redis) move on within a test's timeouts.
    private const string LeaseTtl = "00:00:02";

    private RedisServer? _redis;

    public RedisServer Redis => _redis ?? throw new InvalidOperationException("The fixture has not started.");

    /// <inheritdoc />
    public void AddTo(IDictionary<string, string?> settings)
    {
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Configuration"] = Redis.Configuration;
        settings["Relay:Redis:LeaseTtl"] = LeaseTtl;
    }

    public async Task InitializeAsync() => _redis = await RedisServer.StartAsync();

    public async Task DisposeAsync()
    {
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }
}
