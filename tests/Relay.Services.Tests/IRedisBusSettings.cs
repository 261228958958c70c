namespace Relay.Services.Tests;

/// <summary>A Redis a test class's servers put their bus on: one server (<see cref="RedisBusFixture"/>) or a Cluster (<see cref="RedisClusterBusFixture"/>).</summary>
public interface IRedisBusSettings
{
    /// <summary>Adds the entries that select the Redis bus on this Redis.</summary>
    void AddTo(IDictionary<string, string?> settings);
}
