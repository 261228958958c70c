using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>
/// One real server on the Redis bus, shared by a test class: <see cref="ServerFixture"/>'s settings plus
/// <c>Relay:Bus=redis</c>, backed by a redis-server of its own.
/// </summary>
public sealed class RedisBusServerFixture() : RedisBusServerFixture<RedisBusFixture>(new RedisBusFixture());

/// <summary>One real server on the Redis bus, over the Redis <typeparamref name="TRedis"/> starts.</summary>
public abstract class RedisBusServerFixture<TRedis>(TRedis redis) : IServerFixture, IAsyncLifetime
    where TRedis : IRedisBusSettings, IAsyncLifetime
{
    private readonly TRedis _redis = redis;
    private RelayServer? _server;

    public RelayServer Server => _server ?? throw new InvalidOperationException("The fixture has not started.");

    public async Task InitializeAsync()
    {
        await _redis.InitializeAsync();
        var settings = ServerFixture.Settings();
        _redis.AddTo(settings);
        try
        {
            _server = await RelayServer.StartAsync(settings);
        }
        catch
        {
            // No redis-server outlives a server that failed to start.
            await _redis.DisposeAsync();
            throw;
        }
    }

    public async Task DisposeAsync()
    {
        // The server first: its bus still talks to Redis while it stops.
        try
        {
            if (_server is not null)
            {
                await _server.DisposeAsync();
            }
        }
        finally
        {
            // Whatever the server did while stopping, no redis-server outlives the fixture.
            await _redis.DisposeAsync();
        }
    }
}
