using System.Buffers;
using System.Net.Http.Headers;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Relay.Bus.Redis;

namespace Relay.Bus.Dapr;

/// <summary>
/// One topic's outgoing frames of one kind: posted in order, published in order by one loop through the sidecar's
/// publish API, as many as are waiting (up to <see cref="DaprBusOptions.MaxBatchBytes"/>) per message: a kind byte,
/// then a batch of length-prefixed frames (<see cref="BusCodec.AppendToBatch"/>). Bounded: when the sidecar cannot keep
/// up the newest are dropped (counted, logged); what a node misses it reads back from history.
/// </summary>
internal sealed partial class DaprTopicOutbox
{
    /// <summary>Frames one topic may have waiting: about 25 MB of 250-byte frames, seconds of a busy topic's traffic.</summary>
    private const int Capacity = 100_000;

    private readonly Channel<byte[]> _queue = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(Capacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.DropWrite,
    });

    private readonly HttpClient _http;
    private readonly Uri _publish;
    private readonly string _topic;
    private readonly byte _kind;
    private readonly int _maxBatchBytes;
    private readonly ILogger _logger;
    private readonly CancellationToken _stopping;
    private long _dropped;

    /// <param name="partitionKey">Sent as <c>metadata.partitionKey</c> (Kafka's record key, what orders a partition), or null.</param>
    public DaprTopicOutbox(HttpClient http, DaprBusOptions options, string topic, string? partitionKey, byte kind, ILogger logger, CancellationToken stopping)
    {
        _http = http;
        _topic = topic;
        var metadata = partitionKey is null ? "" : "?metadata.partitionKey=" + Uri.EscapeDataString(partitionKey);
        _publish = new Uri(options.ResolvedHttpEndpoint, $"v1.0/publish/{Uri.EscapeDataString(options.PubSub)}/{Uri.EscapeDataString(topic)}{metadata}");
        _kind = kind;
        _maxBatchBytes = options.MaxBatchBytes;
        _logger = logger;
        _stopping = stopping;
        _ = Task.Run(SendLoopAsync);
    }

    public void Post(byte[] frame)
    {
        if (!_queue.Writer.TryWrite(frame) && Interlocked.Increment(ref _dropped) % 10_000 == 1)
        {
            LogOutboxFull(_logger, _topic, _dropped);
        }
    }

    public void Complete() => _queue.Writer.TryComplete();

    private async Task SendLoopAsync()
    {
        var batch = new ArrayBufferWriter<byte>(16 * 1024);
        var reader = _queue.Reader;
        byte[]? carried = null;
        try
        {
            while (carried is not null || await reader.WaitToReadAsync(_stopping).ConfigureAwait(false))
            {
                batch.ResetWrittenCount();
                batch.GetSpan(1)[0] = _kind;
                batch.Advance(1);
                if (carried is not null)
                {
                    BusCodec.AppendToBatch(batch, carried);
                    carried = null;
                }

                while (reader.TryRead(out var frame))
                {
                    if (batch.WrittenCount > 1 && batch.WrittenCount + 4 + frame.Length > _maxBatchBytes)
                    {
                        carried = frame;
                        break;
                    }

                    BusCodec.AppendToBatch(batch, frame);
                }

                if (batch.WrittenCount == 1)
                {
                    continue;
                }

                // A failed publish may or may not have reached the broker: send it again (at least once is what Dapr
                // gives anyway; receivers drop what they already have by seq and by interest version).
                var payload = batch.WrittenMemory.ToArray();
                for (var attempt = 1; ; attempt++)
                {
                    try
                    {
                        using var content = new ByteArrayContent(payload);
                        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                        using var answer = await _http.PostAsync(_publish, content, _stopping).ConfigureAwait(false);
                        if (answer.IsSuccessStatusCode)
                        {
                            break;
                        }

                        LogPublishFailed(_logger, _topic, attempt, $"the sidecar answered {(int)answer.StatusCode}: {await answer.Content.ReadAsStringAsync(_stopping).ConfigureAwait(false)}");
                    }
                    catch (HttpRequestException e)
                    {
                        LogPublishFailed(_logger, _topic, attempt, e.Message);
                    }
                    catch (TaskCanceledException e) when (!_stopping.IsCancellationRequested)
                    {
                        LogPublishFailed(_logger, _topic, attempt, e.Message);
                    }

                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(1000, 50 * attempt)), _stopping).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            // The bus is stopping.
        }
    }

    [LoggerMessage(EventId = 2110, Level = LogLevel.Warning, Message = "Dapr outbox of topic {Topic} is full; {Dropped} frames dropped so far (subscribers recover them from history)")]
    private static partial void LogOutboxFull(ILogger logger, string topic, long dropped);

    [LoggerMessage(EventId = 2111, Level = LogLevel.Warning, Message = "Could not publish to Dapr topic {Topic} (attempt {Attempt}, retrying): {Reason}")]
    private static partial void LogPublishFailed(ILogger logger, string topic, int attempt, string reason);
}
