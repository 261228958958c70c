namespace Relay.Services.Tests;

/// <summary>As <see cref="RedisBusServerFixture"/>, backed by a three-master Redis Cluster of its own.</summary>
public sealed class RedisClusterBusServerFixture() : RedisBusServerFixture<RedisClusterBusFixture>(new RedisClusterBusFixture());
