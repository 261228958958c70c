using System.Collections.Concurrent;
using Relay.Bus.Shares;
using Relay.Core.Messages;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Shared subscriptions across processes (IShareClaims, docs/mqtt.md): per group (RedisKeys.SharePrefix) a sorted set of
// the processes with an active member, each renewed as a lease of NodeTtl every third of it, a hash of when each became
// active, and one key per message naming who delivers it. The first process to ask about a message picks, round robin
// over the live processes that were active before the message reached it (one that joined later may never have got
// it), and every later asker reads the same answer: exactly one process per message, one round trip per batch.
public sealed partial class RedisBus
{
    /// <summary>
    /// How long a message's choice is kept. A process that reaches a message later than this after the first asker (a
    /// node this far behind) chooses anew, so the message may be delivered twice.
    /// </summary>
    internal static readonly TimeSpan ShareClaimTtl = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How much earlier than a message's arrival at the asker a process must have become active to be chosen for it: the
    /// same message reaches the group's processes at slightly different times.
    /// </summary>
    internal static readonly TimeSpan ShareJoinMargin = TimeSpan.FromSeconds(1);

    // KEYS: nodes, turn, joined. ARGV: process, lease ms, active (1 or 0). An active process's lease ends lease ms from
    // now (Redis clock), and the time it became active is kept until it is not.
    private static readonly RedisLuaScript s_shareRenew = new("""
        if ARGV[3] == '1' then
          local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
          if lease == false or tonumber(lease) <= now then
            redis.call('HSET', KEYS[3], ARGV[1], now)
          end
          redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
          redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
          redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2]) * 2)
        else
          redis.call('ZREM', KEYS[1], ARGV[1])
          redis.call('HDEL', KEYS[3], ARGV[1])
        end
        return 0
        """);

    // KEYS: nodes, turn, joined. ARGV: the group's message-key prefix, process, claim TTL ms, join margin ms, then
    // channel, epoch, seq and age (ms since the asker received it) of each message (the key is made here: nothing is
    // formatted per message in the process). A live process with no join time (written by an older version) counts as
    // joined long ago. When no live process joined early enough, the asker delivers if it is live (it has the message:
    // round robin over the live ones gave another process that had just joined messages it never got, when every
    // process of the group had joined within the margin), else any live process (the asker is leaving, or all its
    // members are away).
    // Returns per message 0 (the asker delivers), 1 (another process does) or 2 (no process was live: each its own rule).
    private static readonly RedisLuaScript s_shareTake = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
        if #gone > 0 then
          redis.call('ZREM', KEYS[1], unpack(gone))
          redis.call('HDEL', KEYS[3], unpack(gone))
        end
        local live = redis.call('ZRANGE', KEYS[1], 0, -1)
        table.sort(live)
        local joined = {}
        local askerLive = false
        for j = 1, #live do
          if live[j] == ARGV[2] then
            askerLive = true
          end
        end
        if #live > 0 then
          local at = redis.call('HMGET', KEYS[3], unpack(live))
          for j = 1, #live do
            joined[j] = tonumber(at[j]) or 0
          end
        end
        local margin = tonumber(ARGV[4])
        local takes = {}
        for i = 5, #ARGV, 4 do
          local key = ARGV[1] .. #ARGV[i] .. ':' .. ARGV[i] .. ':' .. ARGV[i + 1] .. ':' .. ARGV[i + 2]
          local who = redis.call('GET', key)
          if not who then
            if #live == 0 then
              who = ''
            else
              local before = now - tonumber(ARGV[i + 3]) - margin
              local eligible = {}
              for j = 1, #live do
                if joined[j] <= before then
                  eligible[#eligible + 1] = live[j]
                end
              end
              if #eligible > 0 then
                who = eligible[(redis.call('INCR', KEYS[2]) % #eligible) + 1]
              elseif askerLive then
                who = ARGV[2]
              else
                who = live[(redis.call('INCR', KEYS[2]) % #live) + 1]
              end
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

    /// <summary>Renews (or, not active, ends) this process's lease in a group (<paramref name="keys"/>: nodes, turn, joined).</summary>
    internal async Task RenewShareAsync(RedisKey[] keys, bool active)
    {
        try
        {
            await s_shareRenew.EvaluateAsync(Database, keys, [InstanceId, (long)_options.NodeTtl.TotalMilliseconds, active ? 1 : 0]).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException or InvalidOperationException)
        {
            LogShareRenewFailed(_logger, keys[0].ToString(), e.Message);
        }
    }

    /// <summary>Asks who delivers each message (<see cref="IShareMembership.TakeAsync"/>).</summary>
    internal async Task TakeSharedAsync(RedisKey[] keys, string messagePrefix, IReadOnlyList<RelayMessage> messages, IReadOnlyList<TimeSpan> ages, ShareTake[] takes)
    {
        var args = new RedisValue[4 + (4 * messages.Count)];
        args[0] = messagePrefix;
        args[1] = InstanceId;
        args[2] = (long)ShareClaimTtl.TotalMilliseconds;
        args[3] = (long)ShareJoinMargin.TotalMilliseconds;
        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            var at = 4 + (4 * i);
            args[at] = message.Channel;
            args[at + 1] = message.Epoch;
            args[at + 2] = message.Seq;
            args[at + 3] = (long)ages[i].TotalMilliseconds;
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
