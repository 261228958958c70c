using Relay.Testing;

namespace Relay.Functions.Tests;

/// <summary>Webhooks over the Redis bus: fan-out's interest and sequenced messages arrive through Redis.</summary>
public sealed class WebhookRedisTests : WebhookSpec
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
