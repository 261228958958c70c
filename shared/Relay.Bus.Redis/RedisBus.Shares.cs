using System.Collections.Concurrent;
using Relay.Bus.Shares;
using Relay.Core.Messages;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Shared subscriptions across processes (IShareClaims, docs/mqtt.md): per group (RedisKeys.SharePrefix) a sorted set of
// the processes with an active member, each renewed as a lease of NodeTtl every third of it, and one key per message
// naming who delivers it. The first process to ask about a message picks, round robin over the live processes, and
// every later asker reads the same answer: exactly one process per message, one round trip per batch of messages.
public sealed partial class RedisBus
{
    /// <summary>
    /// How long a message's choice is kept. A process that reaches a message later than this after the first asker (a
    /// node this far behind) chooses anew, so the message may be delivered twice.
    /// </summary>
    internal static readonly TimeSpan ShareClaimTtl = TimeSpan.FromSeconds(30);

    // KEYS: nodes. ARGV: process, lease ms, active (1 or 0). An active process's lease ends lease ms from now (Redis clock).
    private static readonly RedisLuaScript s_shareRenew = new("""
        if ARGV[3] == '1' then
          local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
          redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
        else
          redis.call('ZREM', KEYS[1], ARGV[1])
        end
        return 0
        """);

    // KEYS: nodes, turn. ARGV: the group's message-key prefix, process, claim TTL ms, then channel, epoch and seq of each
    // message (the key is made here: nothing is formatted per message in the process).
    // Returns per message 0 (the asker delivers), 1 (another process does) or 2 (no process was live: each its own rule).
    private static readonly RedisLuaScript s_shareTake = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
        local live = redis.call('ZRANGE', KEYS[1], 0, -1)
        table.sort(live)
        local takes = {}
        for i = 4, #ARGV, 3 do
          local key = ARGV[1] .. #ARGV[i] .. ':' .. ARGV[i] .. ':' .. ARGV[i + 1] .. ':' .. ARGV[i + 2]
          local who = redis.call('GET', key)
          if not who then
            if #live == 0 then
              who = ''
            else
              who = live[(redis.call('INCR', KEYS[2]) % #live) + 1]
            end
            redis.call('SET', key, who, 'PX', ARGV[3])
          end
          if who == ARGV[2] then
            takes[#takes + 1] = 0
          elseif who == '' then
            takes[#takes + 1] = 2
          else
            takes[#takes + 1] = 1
          end
        end
        redis.call('PEXPIRE', KEYS[2], ARGV[3])
        return takes
        """);

    private readonly ConcurrentDictionary<RedisShareMembership, byte> _shareMemberships = new();
    private readonly Lock _shareTimerGate = new();
    private ITimer? _shareTimer;

    /// <summary>Joins a group (<see cref="IShareClaims.Join"/>); its lease is renewed with the others' from now on.</summary>
    internal IShareMembership JoinShare(ShareGroup group, Func<bool> active)
    {
        var membership = new RedisShareMembership(this, group, active);
        _shareMemberships[membership] = 0;
        lock (_shareTimerGate)
        {
            var period = _options.NodeTtl / 3;
            _shareTimer ??= _time.CreateTimer(static state => ((RedisBus)state!).RenewShares(), this, period, period);
        }

        membership.Changed();
        return membership;
    }

    internal void LeftShare(RedisShareMembership membership) => _shareMemberships.TryRemove(membership, out _);

    private void RenewShares()
    {
        foreach (var (membership, _) in _shareMemberships)
        {
            membership.Changed();
        }
    }

    /// <summary>Renews (or, not active, ends) this process's lease in a group.</summary>
    internal async Task RenewShareAsync(RedisKey nodes, bool active)
    {
        try
        {
            await s_shareRenew.EvaluateAsync(Database, [nodes], [InstanceId, (long)_options.NodeTtl.TotalMilliseconds, active ? 1 : 0]).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException or InvalidOperationException)
        {
            LogShareRenewFailed(_logger, nodes.ToString(), e.Message);
        }
    }

    /// <summary>Asks who delivers each message (<see cref="IShareMembership.TakeAsync"/>).</summary>
    internal async Task TakeSharedAsync(RedisKey[] keys, string messagePrefix, IReadOnlyList<RelayMessage> messages, ShareTake[] takes)
    {
        var args = new RedisValue[3 + (3 * messages.Count)];
        args[0] = messagePrefix;
        args[1] = InstanceId;
        args[2] = (long)ShareClaimTtl.TotalMilliseconds;
        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            args[3 + (3 * i)] = message.Channel;
            args[4 + (3 * i)] = message.Epoch;
            args[5 + (3 * i)] = message.Seq;
        }

        var result = (RedisResult[])(await s_shareTake.EvaluateAsync(Database, keys, args).ConfigureAwait(false))!;
        for (var i = 0; i < messages.Count; i++)
        {
            takes[i] = (long)result[i] switch
            {
                0 => ShareTake.Here,
                1 => ShareTake.Elsewhere,
                _ => ShareTake.Nobody,
            };
        }
    }
}
