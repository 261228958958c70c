namespace Relay.Redis;

/// <summary>
/// A Lua script run by SHA1: loaded once (SCRIPT LOAD) and run with EVALSHA, so its body crosses the wire once;
/// when the server has forgotten it (restart, SCRIPT FLUSH, another server) the NOSCRIPT reply makes it load
/// again and retry once. Safe to share between callers and connections.
/// </summary>
public sealed class RedisScript(string source)
{
    private Task<string>? _load;

    /// <summary>The Lua source.</summary>
    public string Source { get; } = !string.IsNullOrWhiteSpace(source) ? source : throw new ArgumentException("A Redis script needs a body.", nameof(source));

    /// <summary>Runs the script with <paramref name="keys"/> (KEYS) and <paramref name="args"/> (ARGV).</summary>
    public async Task<RedisValue> EvaluateAsync(RedisConnection connection, string[]? keys = null, RedisArg[]? args = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var sha = await LoadAsync(connection, stale: null).ConfigureAwait(false);
        try
        {
            return await connection.EvalShaAsync(sha, keys, args).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.ErrorCode == "NOSCRIPT")
        {
            sha = await LoadAsync(connection, stale: sha).ConfigureAwait(false);
            return await connection.EvalShaAsync(sha, keys, args).ConfigureAwait(false);
        }
    }

    private Task<string> LoadAsync(RedisConnection connection, string? stale)
    {
        // Concurrent callers share one SCRIPT LOAD; a failed or stale load is replaced by the next caller.
        while (true)
        {
            var current = Volatile.Read(ref _load);
            if (current is not null && !current.IsFaulted && !current.IsCanceled
                && (stale is null || !current.IsCompletedSuccessfully || current.Result != stale))
            {
                return current;
            }

            var next = connection.ScriptLoadAsync(Source);
            if (Interlocked.CompareExchange(ref _load, next, current) == current)
            {
                return next;
            }
        }
    }
}
