using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>
/// One real server on the Redis bus, shared by a test class: <see cref="ServerFixture"/>'s settings plus
/// <c>Relay:Bus=redis</c>, backed by a redis-server of its own.
/// </summary>
public sealed class RedisBusServerFixture() : RedisBusServerFixture<RedisBusFixture>(new RedisBusFixture());

/// <summary>
/// <see cref="RedisBusServerFixture"/> with the node's quiet check off (<c>Relay:Ingress:QuietCheckAfter</c> = 0), for
/// tests of the other repair paths (a jump, a resync notice): with the check on, it would read back what they must.
/// </summary>
public sealed class RedisBusServerWithoutQuietCheckFixture() : RedisBusServerFixture<RedisBusFixture>(new RedisBusFixture(), new Dictionary<string, string?> { ["Relay:Ingress:QuietCheckAfter"] = "00:00:00" });

/// <summary>One real server on the Redis bus, over the Redis <typeparamref name="TRedis"/> starts.</summary>
public abstract class RedisBusServerFixture<TRedis>(TRedis redis, IReadOnlyDictionary<string, string?>? extra = null) : IServerFixture, IAsyncLifetime
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
        foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }
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
