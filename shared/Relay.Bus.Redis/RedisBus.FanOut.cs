using Relay.Bus.FanOut;
using Relay.Core.Messages;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Sequenced fan-out: routing's append script publishes each message on the fan-out channel in seq order, and nodes'
// interest changes go out on the same channel (a JSON object where a message starts with its seq), so fan-out handles
// them in the order Redis ran them: a node's interest is known before any message sequenced after it. The fan-out
// process reloads every node's interest after a (re)connect and sweeps nodes whose heartbeat stopped.
public sealed partial class RedisBus
{
    // KEYS: nodes. ARGV: ttlMs, interest key prefix. Removes nodes whose heartbeat stopped, with their interest; returns their ids.
    private static readonly RedisLuaScript s_sweepNodes = new("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
        for _, node in ipairs(dead) do
          redis.call('ZREM', KEYS[1], node)
          redis.call('DEL', ARGV[2] .. node)
        end
        return dead
        """);

    // Set when the subscription connection comes back: the fan-out loop reloads interest and asks nodes to resync.
    private int _fanOutReload = 1;

    // Counts the subscription connection's returns: each node loop then confirms its channel and checks its channels.
    private int _subscriptionRestores;

    private void OnSubscriptionLost() => CloseReplyGate();

    private void OnSubscriptionBack()
    {
        Volatile.Write(ref _fanOutReload, 1);
        Interlocked.Increment(ref _subscriptionRestores);
        OpenReplyGate();
    }

    /// <inheritdoc />
    public async ValueTask PublishSequencedAsync(RelayMessage message)
    {
        await ReadyAsync().ConfigureAwait(false);
        await Database.PublishAsync(RedisKeys.FanOut, BusCodec.EncodeSequenced(message)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public IDisposable ServeFanOut(IFanOutHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        return Serve(stopping => FanOutLoopAsync(handler, stopping));
    }

    private async Task FanOutLoopAsync(IFanOutHandler handler, CancellationToken stoppingToken)
    {
        Volatile.Write(ref _fanOutReload, 1);
        void OnFrame(ReadOnlyMemory<byte> frame)
        {
            if (frame.IsEmpty || frame.Span[0] != (byte)'{')
            {
                Forget(handler.OnSequencedAsync(BusCodec.DecodeSequenced(frame)));
                return;
            }

            // An interest change. A negative count is a node's reset: forget it, its whole interest follows.
            var change = BusCodec.DecodeInterest(frame);
            Forget(change.Subscribers < 0 ? handler.OnNodeGoneAsync(change.NodeId) : handler.OnInterestAsync(change));
        }

        try
        {
            await ReadyAsync().WaitAsync(stoppingToken).ConfigureAwait(false);
            await SubscribeOrLaterAsync(RedisKeys.FanOut, OnFrame).ConfigureAwait(false);
            var ttlMs = (long)_options.NodeTtl.TotalMilliseconds;
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    // After a start or a reconnect, changes may have been missed: read every node's interest again.
                    if (Interlocked.Exchange(ref _fanOutReload, 0) == 1)
                    {
                        foreach (var (node, interest) in await LoadInterestAsync().ConfigureAwait(false))
                        {
                            foreach (var (app, channel, subscribers) in interest)
                            {
                                await handler.OnInterestAsync(new InterestChange(node, app, channel, subscribers)).ConfigureAwait(false);
                            }
                        }

                        // Subscribed again for sure, messages sequenced while fan-out was not listening are lost to it:
                        // nodes check their channels' positions and read the rest from history.
                        if (!_subscriptions.ContainsKey(RedisKeys.FanOut))
                        {
                            await SubscribeAsync(RedisKeys.FanOut, OnFrame).ConfigureAwait(false);
                        }

                        await Subscriber.PingAsync().ConfigureAwait(false);
                        await Database.PublishAsync(RedisKeys.Resync, "fanout").ConfigureAwait(false);
                    }

                    var dead = (RedisResult[])(await s_sweepNodes.EvaluateAsync(Database, [RedisKeys.Nodes], [ttlMs, RedisKeys.InterestKeyPrefix]).ConfigureAwait(false))!;
                    foreach (var item in dead)
                    {
                        var id = (string)item!;
                        await handler.OnNodeGoneAsync(id).ConfigureAwait(false);
                        var members = await Presence.EvictNodeAsync(id, FanOutChannel).ConfigureAwait(false);
                        if (_outboxes.TryRemove(id, out var outbox))
                        {
                            outbox.Complete();
                        }

                        LogNodeGone(_logger, id, members);
                    }
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    Volatile.Write(ref _fanOutReload, 1);
                    LogSweepFailed(_logger, e.Message);
                }

                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(1000, ttlMs / 3)), stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }

        await IgnoreFailure(UnsubscribeAsync(RedisKeys.FanOut)).ConfigureAwait(false);
    }
}
