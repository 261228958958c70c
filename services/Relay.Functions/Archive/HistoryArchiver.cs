using System.Collections.Frozen;
using System.Threading.Channels;
using Amazon.Runtime;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus.FanOut;
using Relay.Core.Messages;

namespace Relay.Functions.Archive;

/// <summary>
/// Writes channel history to S3 (<see cref="ArchiveKeys"/> says where). It taps fan-out (<see cref="ISequencedTap"/>),
/// so it sees every sequenced message in seq order per channel; fan-out only queues (bounded by bytes, full: the new
/// message is dropped for the archive and counted). A loop of its own groups each channel's messages and writes them
/// as JSON-lines objects once they are <see cref="ArchiveOptions.FlushInterval"/> old or a batch is full; a write that
/// fails is tried again (the messages stay held, and count against the bound) until it succeeds.
/// </summary>
internal sealed partial class HistoryArchiver : BackgroundService, ISequencedTap
{
    /// <summary>What a held message costs beyond its data: a round figure.</summary>
    private const int MessageOverheadBytes = 256;

    /// <summary>At most one line a period for drops and failures.</summary>
    private static readonly TimeSpan LogPeriod = TimeSpan.FromSeconds(10);

    /// <summary>Longest wait before a failed write is tried again (the wait doubles from a second).</summary>
    private static readonly TimeSpan MaxRetryWait = TimeSpan.FromMinutes(1);

    /// <summary>How long stopping spends writing what is held.</summary>
    private static readonly TimeSpan StopFlush = TimeSpan.FromSeconds(10);

    private readonly ArchiveOptions _options;
    private readonly FunctionsMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<HistoryArchiver> _logger;
    private readonly ArchiveWriter _writer;
    private readonly FrozenSet<string>.AlternateLookup<ReadOnlySpan<char>>? _namespaces;
    private readonly Channel<RelayMessage> _queue = Channel.CreateUnbounded<RelayMessage>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Dictionary<(string App, string Channel), ChannelBatch> _batches = [];
    private long _bufferedBytes;
    private long _lastDropLog;
    private long _lastFailLog;

    public HistoryArchiver(IOptions<FunctionsOptions> options, ArchiveWriter writer, FunctionsMetrics metrics, TimeProvider time, ILogger<HistoryArchiver> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _writer = writer;
        _options = options.Value.Archive;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        if (_options.Namespaces.Count > 0)
        {
            _namespaces = _options.Namespaces.ToFrozenSet(StringComparer.Ordinal).GetAlternateLookup<ReadOnlySpan<char>>();
        }
    }

    /// <summary>Message bytes held: queued, waiting for their batch, or failed to write.</summary>
    public long BufferedBytes => Interlocked.Read(ref _bufferedBytes);

    public void OnSequenced(RelayMessage message)
    {
        // Presence events are no part of a channel's history.
        if (!_options.Enabled || message.PresenceAction is not null || !Wanted(message.Channel))
        {
            return;
        }

        var size = message.Data.Length + MessageOverheadBytes;
        if (Interlocked.Add(ref _bufferedBytes, size) > _options.MaxBufferedBytes)
        {
            Interlocked.Add(ref _bufferedBytes, -size);
            _metrics.ArchiveDropped();
            if (Due(ref _lastDropLog))
            {
                LogDropped(_logger, message.App, message.Channel, message.Seq, _options.MaxBufferedBytes);
            }

            return;
        }

        if (!_queue.Writer.TryWrite(message))
        {
            Interlocked.Add(ref _bufferedBytes, -size);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_options.Enabled)
        {
            return;
        }

        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        var s3 = _writer;
        LogStarted(_logger, _options.Bucket!, _options.ServiceUrl ?? "AWS S3 " + _options.Region);
        var tick = TimeSpan.FromTicks(Math.Clamp(_options.FlushInterval.Ticks / 4, TimeSpan.FromMilliseconds(20).Ticks, TimeSpan.FromSeconds(1).Ticks));
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                Take();
                await WriteDueAsync(s3, all: false, stoppingToken).ConfigureAwait(false);
                try
                {
                    await _queue.Reader.WaitToReadAsync(stoppingToken).AsTask().WaitAsync(tick, _time, stoppingToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // A tick: batches may have come due.
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }

        // Stopping: what is held is written now, within a bound.
        using var flush = new CancellationTokenSource(StopFlush);
        Take();
        try
        {
            await WriteDueAsync(s3, all: true, flush.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private void Take()
    {
        var now = _time.GetTimestamp();
        while (_queue.Reader.TryRead(out var message))
        {
            var key = (message.App, message.Channel);
            if (!_batches.TryGetValue(key, out var batch))
            {
                _batches[key] = batch = new ChannelBatch(now);
            }

            batch.Add(message);
        }
    }

    private async Task WriteDueAsync(ArchiveWriter s3, bool all, CancellationToken cancellationToken)
    {
        var now = _time.GetTimestamp();
        List<(string, string)>? done = null;
        foreach (var (key, batch) in _batches)
        {
            if (!all && (batch.RetryAt > now || (batch.Count < _options.MaxMessagesPerObject && _time.GetElapsedTime(batch.Since, now) < _options.FlushInterval)))
            {
                continue;
            }

            if (await WriteAsync(s3, key.App, key.Channel, batch, cancellationToken).ConfigureAwait(false))
            {
                (done ??= []).Add(key);
            }
            else
            {
                batch.Failed(now, _time.TimestampFrequency, MaxRetryWait);
            }
        }

        foreach (var key in done ?? [])
        {
            _batches.Remove(key);
        }
    }

    /// <summary>Writes a channel's held messages, oldest first, in objects of at most MaxMessagesPerObject of one epoch.</summary>
    private async Task<bool> WriteAsync(ArchiveWriter s3, string app, string channel, ChannelBatch batch, CancellationToken cancellationToken)
    {
        while (batch.TryPeek(_options.MaxMessagesPerObject, out var run))
        {
            var first = run[0];
            var last = run[^1];
            var objectKey = ArchiveKeys.For(_options.Prefix, app, channel, first.Epoch, first.Seq, last.Seq);
            try
            {
                await s3.WriteAsync(objectKey, run, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is AmazonServiceException or AmazonClientException or HttpRequestException or IOException)
            {
                _metrics.ArchiveFailed();
                if (Due(ref _lastFailLog))
                {
                    LogWriteFailed(_logger, objectKey, _options.Bucket!, e.Message);
                }

                return false;
            }

            var bytes = 0L;
            foreach (var message in run)
            {
                bytes += message.Data.Length + MessageOverheadBytes;
            }

            batch.Remove(run.Count);
            Interlocked.Add(ref _bufferedBytes, -bytes);
            _metrics.Archived(run.Count);
        }

        return true;
    }

    private bool Wanted(string channel)
    {
        if (_namespaces is not { } namespaces)
        {
            return true;
        }

        var colon = channel.IndexOf(':', StringComparison.Ordinal);
        return colon >= 0 && namespaces.Contains(channel.AsSpan(0, colon));
    }

    private bool Due(ref long last)
    {
        var now = _time.GetTimestamp();
        var previous = Interlocked.Read(ref last);
        return (previous == 0 || _time.GetElapsedTime(previous, now) >= LogPeriod) && Interlocked.CompareExchange(ref last, now, previous) == previous;
    }

    [LoggerMessage(EventId = 3510, Level = LogLevel.Information, Message = "History archive writing to bucket {Bucket} at {Endpoint}")]
    private static partial void LogStarted(ILogger logger, string bucket, string endpoint);

    [LoggerMessage(EventId = 3511, Level = LogLevel.Warning, Message = "History archive dropped messages (the latest: {App}/{Channel} seq {Seq}): it held Relay:Functions:Archive:MaxBufferedBytes ({Limit} bytes) waiting for S3")]
    private static partial void LogDropped(ILogger logger, string app, string channel, long seq, int limit);

    [LoggerMessage(EventId = 3512, Level = LogLevel.Warning, Message = "History archive could not write {Key} to bucket {Bucket} (held, tried again): {Reason}")]
    private static partial void LogWriteFailed(ILogger logger, string key, string bucket, string reason);
}
