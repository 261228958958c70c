using Relay.Bus.Sessions;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// Persistent sessions in Redis (<c>AddRedis()</c> registers it, so the Dapr bus has it too): one hash per client id under
/// <see cref="RedisKeys.Session"/> with <c>claim</c>, <c>ver</c>, <c>held</c> (1 while a node keeps the session live) and
/// <c>state</c> (the node's bytes), PEXPIRE = the session's time to live, set on every write. One script per call keeps
/// the rules of <see cref="ISessionStore"/>, so a take and the old holder's last write never interleave.
/// </summary>
internal sealed class RedisSessionStore(RedisConnector connector) : ISessionStore
{
    // KEYS: the session, its receipts. ARGV: claim, discard (0/1), force (0/1), hold (0/1), ttl (ms).
    // Returns {0, state} taken, {1} held by an earlier claim, {2} a later claim holds it.
    private static readonly RedisLuaScript Take = new("""
        local found = redis.call('HMGET', KEYS[1], 'claim', 'held', 'state')
        local claim = tonumber(ARGV[1])
        if found[1] and tonumber(found[1]) > claim then return {2} end
        if ARGV[2] == '1' then
          redis.call('DEL', KEYS[2])
          if ARGV[4] == '1' or found[1] then
            redis.call('DEL', KEYS[1])
            redis.call('HSET', KEYS[1], 'claim', ARGV[1], 'ver', 0, 'held', ARGV[4], 'state', '')
            redis.call('PEXPIRE', KEYS[1], ARGV[5])
          end
          return {0, ''}
        end
        if found[2] == '1' and tonumber(found[1]) < claim and ARGV[3] == '0' then return {1} end
        local state = found[3] or ''
        redis.call('DEL', KEYS[1])
        redis.call('HSET', KEYS[1], 'claim', ARGV[1], 'ver', 0, 'held', ARGV[4], 'state', state)
        redis.call('PEXPIRE', KEYS[1], ARGV[5])
        return {0, state}
        """);

    // KEYS: the session. ARGV: claim, version, held (0/1), state, ttl (ms). 1 written, 0 a later write came first.
    private static readonly RedisLuaScript Save = new("""
        local found = redis.call('HMGET', KEYS[1], 'claim', 'ver')
        if found[1] then
          local claim, ver = tonumber(found[1]), tonumber(found[2])
          if claim > tonumber(ARGV[1]) or (claim == tonumber(ARGV[1]) and ver >= tonumber(ARGV[2])) then return 0 end
        end
        redis.call('HSET', KEYS[1], 'claim', ARGV[1], 'ver', ARGV[2], 'held', ARGV[3], 'state', ARGV[4])
        redis.call('PEXPIRE', KEYS[1], ARGV[5])
        return 1
        """);

    // KEYS: the session, its receipts. ARGV: claim. Deleted unless a later claim holds it.
    private static readonly RedisLuaScript Delete = new("""
        local claim = redis.call('HGET', KEYS[1], 'claim')
        if claim and tonumber(claim) <= tonumber(ARGV[1]) then redis.call('DEL', KEYS[1], KEYS[2]) end
        return 0
        """);

    // KEYS: the session, its receipts. ARGV: claim, packet id, idempotency id, ttl (ms). The id recorded for the packet
    // id (the first one's); nothing is written while a later claim holds the session.
    private static readonly RedisLuaScript Receive = new("""
        local claim = redis.call('HGET', KEYS[1], 'claim')
        if claim and tonumber(claim) > tonumber(ARGV[1]) then return ARGV[3] end
        redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
        redis.call('PEXPIRE', KEYS[2], ARGV[4])
        return redis.call('HGET', KEYS[2], ARGV[2])
        """);

    /// <inheritdoc />
    public async ValueTask<SessionTake> TakeAsync(string scope, string app, string clientId, long claim, bool discard, bool force, bool hold, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        var result = (RedisResult[])(await Take.EvaluateAsync(database, [RedisKeys.Session(scope, app, clientId), RedisKeys.SessionReceipts(scope, app, clientId)], [claim, discard ? 1 : 0, force ? 1 : 0, hold ? 1 : 0, Milliseconds(ttl)]).ConfigureAwait(false))!;
        return (int)result[0] switch
        {
            0 => new SessionTake(SessionTakeOutcome.Taken, (byte[]?)result[1] ?? []),
            1 => new SessionTake(SessionTakeOutcome.Held, default),
            _ => new SessionTake(SessionTakeOutcome.Later, default),
        };
    }

    /// <inheritdoc />
    public async ValueTask<bool> SaveAsync(string scope, string app, string clientId, long claim, long version, bool held, ReadOnlyMemory<byte> state, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (int)await Save.EvaluateAsync(database, [RedisKeys.Session(scope, app, clientId)], [claim, version, held ? 1 : 0, state, Milliseconds(ttl)]).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async ValueTask DeleteAsync(string scope, string app, string clientId, long claim, CancellationToken cancellationToken)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        await Delete.EvaluateAsync(database, [RedisKeys.Session(scope, app, clientId), RedisKeys.SessionReceipts(scope, app, clientId)], [claim]).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public bool Durable => true;

    /// <inheritdoc />
    public async ValueTask<string> ReceiveAsync(string scope, string app, string clientId, long claim, ushort packetId, string messageId, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        return (string?)await Receive.EvaluateAsync(database, [RedisKeys.Session(scope, app, clientId), RedisKeys.SessionReceipts(scope, app, clientId)], [claim, (int)packetId, messageId, Milliseconds(ttl)]).ConfigureAwait(false) ?? messageId;
    }

    /// <inheritdoc />
    public async ValueTask<bool> ReleaseAsync(string scope, string app, string clientId, ushort packetId, CancellationToken cancellationToken)
    {
        var database = await DatabaseAsync(cancellationToken).ConfigureAwait(false);
        return await database.HashDeleteAsync(RedisKeys.SessionReceipts(scope, app, clientId), (int)packetId).ConfigureAwait(false);
    }

    // PEXPIRE needs at least 1 ms.
    private static long Milliseconds(TimeSpan ttl) => Math.Max(1, (long)ttl.TotalMilliseconds);

    private async Task<IDatabase> DatabaseAsync(CancellationToken cancellationToken) =>
        (await connector.ConnectAsync().WaitAsync(cancellationToken).ConfigureAwait(false)).GetDatabase();
}
