using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using System.IO.Hashing;
using System.Text;
using Relay.Bus.FanOut;
using Relay.Bus.Redis;
using Relay.Core.Channels;
using Relay.Core.Messages;
using StackExchange.Redis;

namespace Relay.Bus.Dapr;

// Fan-out as several instances of one app id. Every instance reads every sequenced message (the pub/sub component gives
// each pod a consumer of its own: consumerID "{podName}") and passes on only those of the shards it leases, by the
// Redis bus's fan-out leases (RedisBus.RenewFanOutLeasesAsync: a fair share each). What it reads of the shards it does
// not lease it keeps a while (StandbyFor), so an instance that takes a shard (a joiner's share, a stopped or killed
// holder's) first passes on what came before, which its last holder may not have passed on; nodes drop the seqs they
// already have and read back from history what is older (their gap repair and quiet check). It does not tell nodes to
// check the shard's channels when it takes one: a node that checked while what was kept was still on its way found
// itself further behind than history holds at a thousand messages a second and told its subscribers they lost them.
// Every instance knows every node's interest (it is small): an invoked change is stored in Redis (a hash, versioned) and
// broadcast on a Redis channel every instance listens on, in one script; the invoked instance answers only once every
// instance that heard it has applied it (each acknowledges on the invoker's channel), so the shard's holder knows
// before the subscriber is told it is subscribed. A starting instance listens first, then loads the hash.
public sealed partial class DaprBus
{
    // Bytes of a shard's messages kept while another instance leases it: as the Redis bus holds a lapsed shard's
    // (4 MiB, ~16,000 frames of 250 bytes, seconds of a busy shard; 64 MiB for 16 shards whatever the message size).
    private const int MaxStandbyBytesPerShard = 4 * 1024 * 1024;

    // How long an invoked interest change waits for every fan-out instance's acknowledgement before it is answered 503
    // (the node then sends it by topic): far above a Redis round trip, well under the node's
    // RequestTimeout (10 s), so one paused instance delays a subscribe by this much at most.
    private static readonly TimeSpan InterestAckTimeout = TimeSpan.FromSeconds(2);

    // The least time a shard's messages are kept while another instance leases it: what its holder had not passed on
    // when it died may be that old, not just what came within its lease time: its sidecar's deliveries and its outbox
    // to the node topics lag behind another instance's reading by seconds under load (on a loaded 2-core machine in
    // DaprFanOutProcessTests). The bytes bound below caps it on a busy shard.
    private static readonly TimeSpan MinStandby = TimeSpan.FromSeconds(5);

    // KEYS: the interest hash. ARGV: field, version, subscribers, the channel to broadcast on ('' : none), the broadcast.
    // Stores "version:subscribers" unless the hash holds a newer version (-1, nothing broadcast); 0 subscribers deletes
    // the field. Returns how many listeners the broadcast reached.
    private static readonly RedisLuaScript s_storeInterest = new("""
        local held = redis.call('HGET', KEYS[1], ARGV[1])
        if held then
          local version = tonumber(string.match(held, '^(%d+):'))
          if version and version >= tonumber(ARGV[2]) then return -1 end
        end
        if tonumber(ARGV[3]) > 0 then
          redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
        else
          redis.call('HDEL', KEYS[1], ARGV[1])
        end
        if ARGV[4] == '' then return 0 end
        return redis.call('PUBLISH', ARGV[4], ARGV[5])
        """);

    // KEYS: the interest hash. ARGV: a node id and "\n". Deletes the node's fields (it stopped).
    private static readonly RedisLuaScript s_forgetNode = new("""
        local prefix = ARGV[1] .. ARGV[2]
        for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
          if string.sub(field, 1, #prefix) == prefix then redis.call('HDEL', KEYS[1], field) end
        end
        return 0
        """);

    private readonly ConcurrentDictionary<long, AckWait> _acks = new();
    private long _nextAck;

    private RedisKey InterestKey => RedisKeys.KeyNamePrefix + "dapr:" + _options.TopicPrefix + ":interest";

    private string InterestChannelName => RedisKeys.ChannelNamePrefix + "dapr:" + _options.TopicPrefix + ":interest";

    private string AckChannelName(string instance) => RedisKeys.ChannelNamePrefix + "dapr:" + _options.TopicPrefix + ":interest-ack:" + instance;

    // The routing shard of a channel, as RedisBus.ShardOf computes it, without allocating (called per message).
    private int ShardOf(string app, string channel)
    {
        var length = Encoding.UTF8.GetByteCount(app) + 1 + Encoding.UTF8.GetByteCount(channel);
        byte[]? rented = null;
        var bytes = length <= 512 ? stackalloc byte[length] : (rented = ArrayPool<byte>.Shared.Rent(length)).AsSpan(0, length);
        var written = Encoding.UTF8.GetBytes(app, bytes);
        bytes[written++] = 0;
        Encoding.UTF8.GetBytes(channel, bytes[written..]);
        var shard = (int)(XxHash32.HashToUInt32(bytes) % (uint)_fanOutShards.Length);
        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }

        return shard;
    }

    // Whether this instance passes on a shard's messages now (for the channel of a topic-borne interest change).
    private bool HoldsFanOutShard(int shard) => Volatile.Read(ref _fanOutShards[shard].ValidUntil) > _time.GetTimestamp();

    // A sequenced message fan-out has not passed on yet: handed to the role when this instance leases its shard, kept
    // for a while when another does.
    private void OnFanOutMessage(IFanOutHandler fanOut, RelayMessage message, int bytes)
    {
        var state = _fanOutShards[ShardOf(message.App, message.Channel)];
        var now = _time.GetTimestamp();
        lock (state.Gate)
        {
            if (state.ValidUntil > now)
            {
                Observe(fanOut.OnSequencedAsync(message));
                return;
            }

            state.Standby.Enqueue((now, message, bytes));
            state.StandbyBytes += bytes;
            var keepFrom = now - (long)(StandbyFor.TotalSeconds * _time.TimestampFrequency);
            while (state.Standby.TryPeek(out var oldest) && (oldest.At < keepFrom || state.StandbyBytes > MaxStandbyBytesPerShard))
            {
                state.Standby.Dequeue();
                state.StandbyBytes -= oldest.Bytes;
            }
        }
    }

    // At least two lease times (a killed holder's lease runs out after one, the taker renews within a third of one
    // more), and never under MinStandby.
    private TimeSpan StandbyFor => TimeSpan.FromTicks(Math.Max(_redis.Options.FanOutLeaseTtl.Ticks * 2, MinStandby.Ticks));

    // Listens for interest changes and loads them, then leases shards every third of the lease time until cancelled,
    // passing on what a taken shard kept; gives every lease back when stopping.
    private async Task FanOutLoopAsync(IFanOutHandler fanOut, CancellationToken cancellationToken)
    {
        var ttl = _redis.Options.FanOutLeaseTtl;
        var ttlTicks = (long)(ttl.TotalSeconds * _time.TimestampFrequency);
        var queues = new List<ChannelMessageQueue>();
        try
        {
            await _redis.ReadyAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
            var subscriber = (await _connector.ConnectAsync().ConfigureAwait(false)).GetSubscriber();

            // Listening before loading: a change stored meanwhile is heard, loaded, or both (versions keep the newest).
            var acks = await subscriber.SubscribeAsync(RedisChannel.Literal(AckChannelName(_redis.InstanceId))).ConfigureAwait(false);
            acks.OnMessage(message => OnAck((byte[]?)message.Message));
            queues.Add(acks);
            var changes = await subscriber.SubscribeAsync(RedisChannel.Literal(InterestChannelName)).ConfigureAwait(false);
            changes.OnMessage(message => OnInterestBroadcast(fanOut, subscriber, (byte[]?)message.Message));
            queues.Add(changes);
            await LoadInterestAsync(fanOut).ConfigureAwait(false);

            while (!cancellationToken.IsCancellationRequested)
            {
                try
                {
                    var started = _time.GetTimestamp();
                    var owned = await _redis.RenewFanOutLeasesAsync().ConfigureAwait(false);

                    // A reply that came after the lease it renewed ran out proves nothing: held shards lapse (their
                    // messages are kept meanwhile) and count as taken at the next renewal.
                    if (started + ttlTicks > _time.GetTimestamp())
                    {
                        var taken = new List<int>();
                        var kept = 0;
                        foreach (var shard in owned)
                        {
                            if (Renew(fanOut, shard, started, started + ttlTicks) is var passed and >= 0)
                            {
                                taken.Add(shard);
                                kept += passed;
                            }
                        }

                        // A shard given back (a joiner's share) keeps being passed on until the lease it had runs out:
                        // by then the taker has it. Both pass meanwhile; nodes drop the seqs they have.
                        if (taken.Count > 0)
                        {
                            LogFanOutShardsTaken(_logger, string.Join(',', taken.Order()), _redis.InstanceId, kept);
                        }
                    }
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    LogFanOutLeaseFailed(_logger, e.Message);
                }

                await Task.Delay(ttl / 3, _time, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopping.
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            LogFanOutLeaseFailed(_logger, e.Message);
        }
        finally
        {
            foreach (var state in _fanOutShards)
            {
                lock (state.Gate)
                {
                    state.ValidUntil = 0;
                    state.Standby.Clear();
                    state.StandbyBytes = 0;
                }
            }

            // Given back at once: the others take the shards at their next renewal, and pass on what they kept.
            await _redis.ReleaseFanOutLeasesAsync().ConfigureAwait(false);
            foreach (var queue in queues)
            {
                try
                {
                    await queue.UnsubscribeAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException)
                {
                    // Best effort while stopping.
                }
            }
        }
    }

    // Extends the lease on a shard here. When it was not valid before this renewal began (taken now, or lapsed), what the
    // shard kept meanwhile goes to the role first, in the order it came, under the shard's gate: returns how many; -1
    // when it was held.
    private int Renew(IFanOutHandler fanOut, int shard, long started, long validUntil)
    {
        var state = _fanOutShards[shard];
        lock (state.Gate)
        {
            var taken = state.ValidUntil <= started;
            state.ValidUntil = validUntil;
            var passed = state.Standby.Count;
            while (state.Standby.TryDequeue(out var kept))
            {
                Observe(fanOut.OnSequencedAsync(kept.Message));
            }

            state.StandbyBytes = 0;
            return taken ? passed : -1;
        }
    }

    private async Task LoadInterestAsync(IFanOutHandler fanOut)
    {
        foreach (var entry in await _redis.Database.HashGetAllAsync(InterestKey).ConfigureAwait(false))
        {
            var field = ((string)entry.Name!).Split('\n');
            var value = ((string)entry.Value!).Split(':');
            if (field.Length == 3 && value.Length == 2
                && long.TryParse(value[0], NumberStyles.None, CultureInfo.InvariantCulture, out var version)
                && int.TryParse(value[1], NumberStyles.None, CultureInfo.InvariantCulture, out var subscribers))
            {
                ApplyInterest(fanOut, version, new InterestChange(field[0], field[1], field[2], subscribers), fromTopic: false);
            }
        }
    }

    // An interest change invoked on this instance: stored and broadcast to every fan-out instance, answered once each
    // that heard it applied it. False when one did not answer in time (the node sends it by topic instead).
    internal async Task<bool> OnInterestInvokedAsync(ReadOnlyMemory<byte> data)
    {
        if (_fanOut is not { } fanOut || data.Length == 0 || data.Span[0] != InterestKind)
        {
            return false;
        }

        var all = true;
        foreach (var frame in BusCodec.ReadBatch(data[1..]))
        {
            var version = BinaryPrimitives.ReadInt64BigEndian(frame.Span);
            var change = BusCodec.DecodeInterest(frame[8..]);
            if (change.Subscribers == NodeGone)
            {
                ForgetNode(fanOut, change.NodeId);
                continue;
            }

            all &= await BroadcastAsync(frame, version, change).ConfigureAwait(false);

            // Applied here too, whether this instance heard its broadcast yet or not.
            ApplyInterest(fanOut, version, change, fromTopic: false);
        }

        return all;
    }

    private async Task<bool> BroadcastAsync(ReadOnlyMemory<byte> frame, long version, InterestChange change)
    {
        var correlation = Interlocked.Increment(ref _nextAck);
        var wait = new AckWait();
        _acks[correlation] = wait;
        try
        {
            // correlation (8 bytes), the invoker's instance id, NUL, the interest frame (version + change).
            var replyTo = Encoding.UTF8.GetBytes(_redis.InstanceId);
            var broadcast = new byte[8 + replyTo.Length + 1 + frame.Length];
            BinaryPrimitives.WriteInt64BigEndian(broadcast, correlation);
            replyTo.CopyTo(broadcast, 8);
            frame.Span.CopyTo(broadcast.AsSpan(8 + replyTo.Length + 1));
            var heard = (long)await s_storeInterest.EvaluateAsync(
                _redis.Database,
                [InterestKey],
                [Field(change), version, change.Subscribers, InterestChannelName, broadcast]).ConfigureAwait(false);
            if (heard <= 0)
            {
                // Older than what is stored (a newer change went first), or no instance listening yet.
                return true;
            }

            wait.Expect((int)heard);
            await wait.Done.Task.WaitAsync(InterestAckTimeout, _time, _stopping.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            LogInterestNotAcknowledged(_logger, change.NodeId, change.ChannelOrPattern, wait.Arrived, InterestAckTimeout.TotalSeconds);
            return false;
        }
        catch (RedisException e)
        {
            LogFanOutLeaseFailed(_logger, e.Message);
            return false;
        }
        finally
        {
            _acks.TryRemove(correlation, out _);
        }
    }

    // In the broadcast subscription's queue: applied, then acknowledged on the invoker's channel.
    private void OnInterestBroadcast(IFanOutHandler fanOut, ISubscriber subscriber, byte[]? broadcast)
    {
        if (broadcast is not { Length: > 9 })
        {
            return;
        }

        try
        {
            var end = Array.IndexOf(broadcast, (byte)0, 8);
            if (end < 0)
            {
                throw new FormatException("an interest broadcast lacks its separator");
            }

            var replyTo = Encoding.UTF8.GetString(broadcast, 8, end - 8);
            var frame = broadcast.AsMemory(end + 1);
            var version = BinaryPrimitives.ReadInt64BigEndian(frame.Span);
            ApplyInterest(fanOut, version, BusCodec.DecodeInterest(frame[8..]), fromTopic: false);
            _ = subscriber.PublishAsync(RedisChannel.Literal(AckChannelName(replyTo)), broadcast.AsMemory(0, 8).ToArray(), CommandFlags.FireAndForget);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or System.Text.Json.JsonException)
        {
            LogBadFrame(_logger, "interest broadcast", e);
        }
    }

    private void OnAck(byte[]? ack)
    {
        if (ack is { Length: 8 } && _acks.TryGetValue(BinaryPrimitives.ReadInt64BigEndian(ack), out var wait))
        {
            wait.Arrive();
        }
    }

    // A topic-borne change (the invocation failed): stored for instances that start later (no broadcast: every instance
    // reads the topic itself).
    private void StoreInterest(long version, InterestChange change) =>
        Observe(new ValueTask(s_storeInterest.EvaluateAsync(_redis.Database, [InterestKey], [Field(change), version, change.Subscribers, "", ""])));

    private void ForgetNode(IFanOutHandler fanOut, string nodeId)
    {
        lock (_interestGate)
        {
            foreach (var key in _interest.Keys.Where(k => k.Node == nodeId).ToList())
            {
                _interest.Remove(key);
            }
        }

        Observe(fanOut.OnNodeGoneAsync(nodeId));
        Observe(new ValueTask(s_forgetNode.EvaluateAsync(_redis.Database, [InterestKey], [nodeId, "\n"])));
    }

    private static string Field(InterestChange change) => change.NodeId + "\n" + change.App + "\n" + change.ChannelOrPattern;

    // Applies a change unless an equal or newer one was (redelivered, overtaken, heard twice). A change that came late by
    // the topic and adds a node's first interest in a channel this instance leases makes the node check the channel: a
    // message sequenced before it arrived reached no node.
    private void ApplyInterest(IFanOutHandler fanOut, long version, InterestChange change, bool fromTopic)
    {
        bool gained;
        lock (_interestGate)
        {
            var key = (change.NodeId, change.App, change.ChannelOrPattern);
            var before = _interest.TryGetValue(key, out var seen) ? seen : (Version: 0L, Subscribers: 0);
            if (version <= before.Version)
            {
                return;
            }

            _interest[key] = (version, change.Subscribers);
            gained = before.Subscribers == 0 && change.Subscribers > 0;
            Observe(fanOut.OnInterestAsync(change));
        }

        if (fromTopic && gained && !ChannelName.IsPattern(change.ChannelOrPattern) && HoldsFanOutShard(ShardOf(change.App, change.ChannelOrPattern)))
        {
            Outbox(_options.NodeTopic(change.NodeId), ResyncKind, change.NodeId).Post(EncodeResync(change.App, change.ChannelOrPattern));
        }
    }

    private sealed class FanOutShard
    {
        public readonly Lock Gate = new();

        // Messages of the shard read while another instance leases it, oldest first (under Gate).
        public readonly Queue<(long At, RelayMessage Message, int Bytes)> Standby = new();

        // TimeProvider timestamp until which this instance's lease surely holds (renewal sent + lease time); 0: never.
        public long ValidUntil;

        public long StandbyBytes;
    }

    // Acknowledgements of one broadcast: done when as many came as the broadcast reached.
    private sealed class AckWait
    {
        private readonly Lock _gate = new();
        private int _expected = int.MaxValue;

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Arrived { get; private set; }

        public void Expect(int count)
        {
            lock (_gate)
            {
                _expected = count;
                if (Arrived >= _expected)
                {
                    Done.TrySetResult();
                }
            }
        }

        public void Arrive()
        {
            lock (_gate)
            {
                Arrived++;
                if (Arrived >= _expected)
                {
                    Done.TrySetResult();
                }
            }
        }
    }
}
