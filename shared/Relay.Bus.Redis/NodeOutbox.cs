using System.Buffers;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// One node's outgoing messages: posted in order by fan-out, published in order by one loop, as many as are waiting
/// (up to <see cref="RedisBusOptions.MaxBatchBytes"/>) per PUBLISH. Bounded: when Redis cannot keep up the newest are
/// dropped (counted, logged) rather than memory growing; subscribers recover what they miss from history.
/// </summary>
internal sealed partial class NodeOutbox
{
    /// <summary>Messages one node may have waiting: about 25 MB of 250-byte frames, seconds of a busy node's traffic.</summary>
    private const int Capacity = 100_000;

    private readonly Channel<byte[]> _queue = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(Capacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.DropWrite,
    });

    private readonly Task<IDatabaseAsync> _database;
    private readonly RedisChannel _channel;
    private readonly int _maxBatchBytes;
    private readonly ILogger _logger;
    private readonly CancellationToken _stopping;
    private long _dropped;

    /// <param name="database">The bus's database once it is connected: posts made before wait in the queue.</param>
    public NodeOutbox(Task<IDatabaseAsync> database, string nodeId, int maxBatchBytes, ILogger logger, CancellationToken stopping)
    {
        _database = database;
        _channel = RedisKeys.Node(nodeId);
        _maxBatchBytes = maxBatchBytes;
        _logger = logger;
        _stopping = stopping;
        _ = Task.Run(SendLoopAsync);
    }

    public void Post(byte[] frame)
    {
        if (!_queue.Writer.TryWrite(frame) && Interlocked.Increment(ref _dropped) % 10_000 == 1)
        {
            LogOutboxFull(_logger, _channel.ToString(), _dropped);
        }
    }

    public void Complete() => _queue.Writer.TryComplete();

    private async Task SendLoopAsync()
    {
        var batch = new ArrayBufferWriter<byte>(16 * 1024);
        var reader = _queue.Reader;
        try
        {
            var database = await _database.WaitAsync(_stopping).ConfigureAwait(false);
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                batch.ResetWrittenCount();
                while (batch.WrittenCount < _maxBatchBytes && reader.TryRead(out var frame))
                {
                    BusCodec.AppendToBatch(batch, frame);
                }

                // A failed PUBLISH may or may not have reached Redis: send it again (nodes drop what they already
                // have by seq) until it goes through or the bus stops.
                var payload = batch.WrittenMemory.ToArray();
                for (var attempt = 1; ; attempt++)
                {
                    try
                    {
                        await database.PublishAsync(_channel, payload).ConfigureAwait(false);
                        break;
                    }
                    catch (Exception e) when (e is RedisException or TimeoutException)
                    {
                        LogDeliveryFailed(_logger, _channel.ToString(), attempt, e.Message);
                        await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(1000, 50 * attempt)), _stopping).ConfigureAwait(false);
                    }
                }
            }
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            // The bus is stopping.
        }
    }

    [LoggerMessage(EventId = 2009, Level = LogLevel.Warning, Message = "Outbox of {Channel} is full; {Dropped} messages dropped so far (subscribers recover them from history)")]
    private static partial void LogOutboxFull(ILogger logger, string channel, long dropped);

    [LoggerMessage(EventId = 2010, Level = LogLevel.Warning, Message = "Could not deliver a batch on {Channel} (attempt {Attempt}, retrying): {Reason}")]
    private static partial void LogDeliveryFailed(ILogger logger, string channel, int attempt, string reason);
}
