using Relay.Testing;

namespace Relay.Functions.Tests;

/// <summary>The before-publish hook over the Redis bus (state and sequencing in Redis: <c>RedisChannelAuthority</c>).</summary>
public sealed class BeforePublishHookRedisTests : BeforePublishHookSpec
{
    private RedisServer? _redis;

    private protected override async Task<Dictionary<string, string?>> BusSettingsAsync()
    {
        _redis = await RedisServer.StartAsync();
        return new Dictionary<string, string?> { ["Relay:Bus"] = "redis", ["Relay:Redis:Configuration"] = _redis.Configuration };
    }

    private protected override async Task DisposeBusAsync()
    {
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }
}
