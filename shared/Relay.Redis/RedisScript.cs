using System.Security.Cryptography;
using System.Text;

namespace Relay.Redis;

/// <summary>
/// A Lua script run by SHA1 (EVALSHA), so its body crosses the wire only while the server may not know it: until one
/// run succeeded, and again after a NOSCRIPT reply (restart, SCRIPT FLUSH, another server), it is sent whole with EVAL,
/// which also caches it. Either command is written when <see cref="EvaluateAsync"/> is called, never after an await,
/// so calls on one connection reach the server in call order. Safe to share between callers and connections.
/// </summary>
public sealed class RedisScript
{
    private volatile bool _cached;

    /// <param name="source">The Lua source.</param>
    public RedisScript(string source)
    {
        Source = !string.IsNullOrWhiteSpace(source) ? source : throw new ArgumentException("A Redis script needs a body.", nameof(source));
        Sha1 = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(source)));
    }

    /// <summary>The Lua source.</summary>
    public string Source { get; }

    /// <summary>The SHA1 the server knows the script by.</summary>
    public string Sha1 { get; }

    /// <summary>Runs the script with <paramref name="keys"/> (KEYS) and <paramref name="args"/> (ARGV).</summary>
    public Task<RedisValue> EvaluateAsync(RedisConnection connection, string[]? keys = null, RedisArg[]? args = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return _cached ? RunCachedAsync(connection, keys, args) : RunWholeAsync(connection, keys, args);
    }

    private async Task<RedisValue> RunCachedAsync(RedisConnection connection, string[]? keys, RedisArg[]? args)
    {
        try
        {
            return await connection.EvalShaAsync(Sha1, keys, args).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.ErrorCode == "NOSCRIPT")
        {
            // The server forgot it: send it whole (this one call may now run after calls made later).
            _cached = false;
            return await RunWholeAsync(connection, keys, args).ConfigureAwait(false);
        }
    }

    private async Task<RedisValue> RunWholeAsync(RedisConnection connection, string[]? keys, RedisArg[]? args)
    {
        var result = await connection.EvalAsync(Source, keys, args).ConfigureAwait(false);
        _cached = true;
        return result;
    }
}
