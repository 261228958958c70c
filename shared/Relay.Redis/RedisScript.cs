using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;

namespace Relay.Redis;

/// <summary>
/// A Lua script run by SHA1 (EVALSHA), so its body crosses the wire only while the server may not know it: on a
/// connection's first call, and again after a NOSCRIPT reply (restart, SCRIPT FLUSH), it is sent whole with EVAL, which
/// also caches it. Either command is written when <see cref="EvaluateAsync"/> is called, never after an await, so calls
/// on one connection reach the server in call order. What the server knows is tracked per connection: one script
/// object serves connections to different servers. Safe to share between callers and connections.
/// </summary>
public sealed class RedisScript
{
    // Per connection: whether an EVAL of this script was written on it (so the server has it by the time a later
    // command runs). A CWT so that a disposed connection's entry goes with it.
    private readonly ConditionalWeakTable<RedisConnection, StrongBox<bool>> _known = [];

    /// <param name="source">The Lua source.</param>
    /// <param name="keepsCallOrder">
    /// The calls must run in the order they were made (appends that give out seqs). A call refused with NOSCRIPT did
    /// not run, but re-sending it would put it behind calls made after it that the server is already running; such a
    /// script's call fails instead (<see cref="RedisServerException"/>, NOSCRIPT: nothing happened, try again) and the
    /// next call sends the script whole. Other scripts re-send the refused call at once.
    /// </param>
    public RedisScript(string source, bool keepsCallOrder = false)
    {
        Source = !string.IsNullOrWhiteSpace(source) ? source : throw new ArgumentException("A Redis script needs a body.", nameof(source));
        Sha1 = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(source)));
        KeepsCallOrder = keepsCallOrder;
    }

    /// <summary>The Lua source.</summary>
    public string Source { get; }

    /// <summary>The SHA1 the server knows the script by.</summary>
    public string Sha1 { get; }

    /// <summary>Whether a call refused with NOSCRIPT fails rather than being re-sent out of order.</summary>
    public bool KeepsCallOrder { get; }

    /// <summary>Runs the script with <paramref name="keys"/> (KEYS) and <paramref name="args"/> (ARGV).</summary>
    public Task<RedisValue> EvaluateAsync(RedisConnection connection, string[]? keys = null, RedisArg[]? args = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var known = _known.GetValue(connection, static _ => new StrongBox<bool>());
        if (Volatile.Read(ref known.Value))
        {
            return RunCachedAsync(connection, known, keys, args);
        }

        // Written now, so every command written after it on this connection finds the script cached.
        var whole = connection.EvalAsync(Source, keys, args);
        Volatile.Write(ref known.Value, true);
        return whole;
    }

    private async Task<RedisValue> RunCachedAsync(RedisConnection connection, StrongBox<bool> known, string[]? keys, RedisArg[]? args)
    {
        try
        {
            return await connection.EvalShaAsync(Sha1, keys, args).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.ErrorCode == "NOSCRIPT")
        {
            // The server forgot it: the next call sends it whole.
            Volatile.Write(ref known.Value, false);
            if (KeepsCallOrder)
            {
                throw;
            }

            return await EvaluateAsync(connection, keys, args).ConfigureAwait(false);
        }
    }
}
