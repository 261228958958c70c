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
        _outboxes.GetOrAdd(nodeId, static (id, self) => new NodeOutbox(self.DatabaseWhenReadyAsync(), id, self._options.MaxBatchBytes, self._logger, self._stopping.Token), this).Post(frame);
        return ValueTask.CompletedTask;
    }

    private async Task<IDatabaseAsync> DatabaseWhenReadyAsync()
    {
        await ReadyAsync().ConfigureAwait(false);
        return Database;
    }
}
