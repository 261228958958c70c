using System.Collections.Concurrent;
using Relay.Core.Messages;

using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Node outboxes: fan-out hands each interested node's messages to that node's outbox, which publishes them in batches
// on the node's channel.
public sealed partial class RedisBus
{
    private readonly ConcurrentDictionary<string, NodeOutbox> _outboxes = new(StringComparer.Ordinal);

    [ThreadStatic]
    private static (RelayMessage Message, byte[] Frame) t_lastEncoded;

    /// <inheritdoc />
    public ValueTask DeliverToNodeAsync(string nodeId, RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);

        // Fan-out hands one message to every interested node in turn: encode it once.
        var cached = t_lastEncoded;
        byte[] frame;
        if (ReferenceEquals(cached.Message, message))
        {
            frame = cached.Frame;
        }
        else
        {
            frame = BusCodec.EncodeSequenced(message);
            t_lastEncoded = (message, frame);
        }

        // A delivery never fails for a bus still connecting (IRelayBus's contract): the outbox sends once it is ready.
        _outboxes.GetOrAdd(nodeId, static (id, self) => new NodeOutbox(self.OutboxTargetAsync(id), id, self._options.MaxBatchBytes, self._logger, self._stopping.Token), this).Post(frame);
        return ValueTask.CompletedTask;
    }

    private async Task<(IDatabaseAsync Database, RedisChannel Channel)> OutboxTargetAsync(string nodeId)
    {
        await ReadyAsync().ConfigureAwait(false);
        return (Database, NodeChannel(nodeId));
    }

    // A node's delivery channel. On a Redis Cluster a plain PUBLISH goes over the cluster bus to every node, whoever
    // subscribes, so each batch cost every master a copy (what caps a Cluster's pub/sub); a sharded channel
    // (SPUBLISH/SSUBSCRIBE) goes to its slot's master only, where the node subscribes. When the slot moves or fails
    // over, the server ends the subscription and StackExchange.Redis subscribes again on the new master; a batch
    // published meanwhile is lost and the node reads it back from history at its next message (ReshardRedisClusterTests).
    private RedisChannel NodeChannel(string nodeId) =>
        _isCluster ? RedisChannel.Sharded(RedisKeys.NodeName(nodeId)) : RedisKeys.Node(nodeId);
}
