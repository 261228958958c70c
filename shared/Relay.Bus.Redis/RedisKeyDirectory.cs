using Relay.Bus.Keys;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// The key directory in Redis (<c>AddRedis()</c> registers it): one script replaces the key set
/// (<see cref="RedisKeys.AuthKeys"/>), adds the signer (<see cref="RedisKeys.AuthSigners"/>) and bumps the version
/// (<see cref="RedisKeys.AuthVersion"/>), which ingress nodes following the auth service poll.
/// </summary>
internal sealed class RedisKeyDirectory(RedisConnector connector) : IKeyDirectory
{
    // KEYS: keys, signers, version. ARGV: signer kid, signer SPKI, then name/json pairs. Replaces the key set at once.
    private static readonly RedisLuaScript Publish = new("""
        redis.call('DEL', KEYS[1])
        for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
        return redis.call('INCR', KEYS[3])
        """);

    public async Task<long> PublishAsync(string signerKeyId, string signerPublicKey, IReadOnlyList<KeyValuePair<string, byte[]>> keys, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var database = (await connector.ConnectAsync().WaitAsync(cancellationToken).ConfigureAwait(false)).GetDatabase();
        var args = new RedisValue[2 + (keys.Count * 2)];
        args[0] = signerKeyId;
        args[1] = signerPublicKey;
        for (var i = 0; i < keys.Count; i++)
        {
            args[2 + (i * 2)] = keys[i].Key;
            args[3 + (i * 2)] = keys[i].Value;
        }

        return (long)await Publish.EvaluateAsync(database, [RedisKeys.AuthKeys, RedisKeys.AuthSigners, RedisKeys.AuthVersion], args).ConfigureAwait(false);
    }
}
