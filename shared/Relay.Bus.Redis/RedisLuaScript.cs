using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// A Lua script Relay runs by its SHA1 (<c>EVALSHA</c>). Every script made is loaded (<c>SCRIPT LOAD</c>) on every server
/// when <see cref="RedisConnector"/> connects and again on each server whose connection is restored, before the calls
/// queued meanwhile reach it where the client allows, so a call normally finds its script.
/// </summary>
/// <remarks>
/// Why not <c>IDatabase.ScriptEvaluateAsync(string)</c>: StackExchange.Redis answers a <c>NOSCRIPT</c> (a restarted or
/// flushed server) by sending the call again whole (<c>EVAL</c>) when its reply comes back, behind calls made after it, so
/// two appends made in order could run out of order. Here a call refused with <c>NOSCRIPT</c> did not run; a script made
/// with <c>keepsCallOrder</c> (the channel log's append) fails it (routing answers 50300, the client tries again) after
/// loading every script again, and any other script is loaded and called once more.
/// </remarks>
public sealed class RedisLuaScript
{
    private static readonly ConcurrentDictionary<string, RedisLuaScript> s_all = new(StringComparer.Ordinal);

    /// <summary>Makes a script; it is loaded on every server from the next connect or restore on.</summary>
    public RedisLuaScript(string text, bool keepsCallOrder = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(text);
        Text = text;
        KeepsCallOrder = keepsCallOrder;
        Sha1 = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(text)));
        s_all.TryAdd(Sha1, this);
    }

    /// <summary>The Lua source.</summary>
    public string Text { get; }

    /// <summary>The SHA1 <c>EVALSHA</c> names it by (lower-case hex).</summary>
    public string Sha1 { get; }

    /// <summary>Whether a call refused with <c>NOSCRIPT</c> fails rather than being sent again after later calls.</summary>
    public bool KeepsCallOrder { get; }

    /// <summary>
    /// Runs the script, on a master only (every script writes; with the master gone it fails rather than meet a
    /// replica's READONLY). The command is written before this method first awaits, so calls made in order on one
    /// multiplexer run in that order on the server.
    /// </summary>
    public async Task<RedisResult> EvaluateAsync(IDatabaseAsync database, RedisKey[] keys, RedisValue[] args)
    {
        ArgumentNullException.ThrowIfNull(database);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(args);
        var pending = database.ExecuteAsync("EVALSHA", Arguments(keys, args), CommandFlags.DemandMaster);
        try
        {
            return await pending.ConfigureAwait(false);
        }
        catch (RedisServerException e) when (IsNoScript(e))
        {
            await LoadAllAsync(database.Multiplexer).ConfigureAwait(false);
            if (KeepsCallOrder)
            {
                throw;
            }

            return await database.ExecuteAsync("EVALSHA", Arguments(keys, args), CommandFlags.DemandMaster).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Runs the script with no keys on <paramref name="server"/> (a master): in Redis Cluster, what it publishes then
    /// leaves from that master, in order with its other writes' publishes.
    /// </summary>
    public async Task<RedisResult> EvaluateOnAsync(IServer server, RedisValue[] args)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(args);
        var pending = server.ExecuteAsync("EVALSHA", Arguments([], args));
        try
        {
            return await pending.ConfigureAwait(false);
        }
        catch (RedisServerException e) when (IsNoScript(e))
        {
            await LoadAsync(server).ConfigureAwait(false);
            if (KeepsCallOrder)
            {
                throw;
            }

            return await server.ExecuteAsync("EVALSHA", Arguments([], args)).ConfigureAwait(false);
        }
    }

    /// <summary>Whether an error is the server's "no script by that SHA1".</summary>
    public static bool IsNoScript(RedisServerException error) =>
        error?.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal) == true;

    /// <summary>Loads every script made so far on every connected server of <paramref name="multiplexer"/>.</summary>
    public static async Task LoadAllAsync(IConnectionMultiplexer multiplexer)
    {
        ArgumentNullException.ThrowIfNull(multiplexer);
        foreach (var server in multiplexer.GetServers())
        {
            if (server.IsConnected)
            {
                await LoadAsync(server).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Loads every script made so far on the server at <paramref name="endPoint"/>.</summary>
    public static Task LoadAsync(IConnectionMultiplexer multiplexer, EndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(multiplexer);
        return LoadAsync(multiplexer.GetServer(endPoint));
    }

    private static async Task LoadAsync(IServer server)
    {
        // Pipelined: one round trip for all of them.
        var loads = new List<Task<byte[]>>(s_all.Count);
        foreach (var script in s_all.Values)
        {
            loads.Add(server.ScriptLoadAsync(script.Text));
        }

        await Task.WhenAll(loads).ConfigureAwait(false);
    }

    private object[] Arguments(RedisKey[] keys, RedisValue[] args)
    {
        var all = new object[2 + keys.Length + args.Length];
        all[0] = Sha1;
        all[1] = keys.Length;
        for (var i = 0; i < keys.Length; i++)
        {
            // A RedisKey routes the command to its slot's server (Cluster).
            all[2 + i] = keys[i];
        }

        for (var i = 0; i < args.Length; i++)
        {
            all[2 + keys.Length + i] = args[i];
        }

        return all;
    }
}
