using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Relay.Functions.Delivery;

/// <summary>
/// A bounded queue of events for one receiver, sent by <see cref="FunctionsOptions.Concurrency"/> workers, each event
/// tried up to <see cref="FunctionsOptions.MaxAttempts"/> times with exponential backoff, then dead-lettered. Adding
/// never waits: a full queue drops the new event (counted, logged), so a slow receiver never slows whoever adds.
/// </summary>
internal sealed partial class DeliveryQueue
{
    /// <summary>At most one line a period for drops: a receiver that is down would otherwise log once per event.</summary>
    private static readonly TimeSpan LogPeriod = TimeSpan.FromSeconds(10);

    private readonly string _kind;
    private readonly string _destination;
    private readonly Func<IOutbound, int, CancellationToken, Task<Calls.CallResult>> _send;
    private readonly FunctionsOptions _options;
    private readonly TimeProvider _time;
    private readonly FunctionsMetrics _metrics;
    private readonly DeadLetters _deadLetters;
    private readonly ILogger _logger;
    private readonly Channel<IOutbound> _queue;
    private long _queuedBytes;
    private long _droppedSinceLog;
    private long _lastDropLog;

    public DeliveryQueue(string kind, string destination, Func<IOutbound, int, CancellationToken, Task<Calls.CallResult>> send, FunctionsOptions options, TimeProvider time, FunctionsMetrics metrics, DeadLetters deadLetters, ILogger logger)
    {
        _kind = kind;
        _destination = destination;
        _send = send;
        _options = options;
        _time = time;
        _metrics = metrics;
        _deadLetters = deadLetters;
        _logger = logger;
        _queue = Channel.CreateBounded<IOutbound>(new BoundedChannelOptions(options.QueueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleWriter = false,
            SingleReader = options.Concurrency == 1,
        });
    }

    /// <summary>Bytes the queued events hold (an estimate).</summary>
    public long QueuedBytes => Interlocked.Read(ref _queuedBytes);

    /// <summary>Queues an event; false (and counted) when the queue holds QueueCapacity events or QueueBytes.</summary>
    public bool TryEnqueue(IOutbound item)
    {
        var size = item.Size;
        if (Interlocked.Add(ref _queuedBytes, size) <= _options.QueueBytes)
        {
            if (_queue.Writer.TryWrite(item))
            {
                return true;
            }
        }

        Interlocked.Add(ref _queuedBytes, -size);

        _metrics.Dropped(_kind);
        Interlocked.Increment(ref _droppedSinceLog);
        var now = _time.GetTimestamp();
        var last = Interlocked.Read(ref _lastDropLog);
        if ((last == 0 || _time.GetElapsedTime(last, now) >= LogPeriod) && Interlocked.CompareExchange(ref _lastDropLog, now, last) == last)
        {
            LogDropped(_logger, Interlocked.Exchange(ref _droppedSinceLog, 0), _kind, _destination, _options.QueueCapacity, _options.QueueBytes);
        }

        return false;
    }

    /// <summary>Sends until <paramref name="stoppingToken"/> is cancelled; what is still queued then is not sent.</summary>
    public Task RunAsync(CancellationToken stoppingToken)
    {
        var workers = new Task[_options.Concurrency];
        for (var i = 0; i < workers.Length; i++)
        {
            workers[i] = WorkAsync(stoppingToken);
        }

        return Task.WhenAll(workers);
    }

    private async Task WorkAsync(CancellationToken stoppingToken)
    {
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        try
        {
            while (await _queue.Reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
            {
                while (_queue.Reader.TryRead(out var item))
                {
                    try
                    {
                        await DeliverAsync(item, stoppingToken).ConfigureAwait(false);
                    }
                    finally
                    {
                        Interlocked.Add(ref _queuedBytes, -item.Size);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task DeliverAsync(IOutbound item, CancellationToken stoppingToken)
    {
        var delay = _options.FirstRetryDelay;
        for (var attempt = 1; ; attempt++)
        {
            var result = await _send(item, attempt, stoppingToken).ConfigureAwait(false);
            if (result.Succeeded)
            {
                _metrics.Delivered(_kind);
                return;
            }

            if (attempt >= _options.MaxAttempts)
            {
                _metrics.DeadLettered(_kind);
                _deadLetters.Add(new DeadLetter(_kind, _destination, item.Type, item.Id, attempt, result.Failure!, _time.GetUtcNow(), item.Body));
                LogDeadLettered(_logger, _kind, item.Type, item.Id, _destination, attempt, result.Failure!);
                return;
            }

            _metrics.Retried(_kind);
            LogRetrying(_logger, _kind, item.Id, _destination, attempt, result.Failure!, delay.TotalMilliseconds);
            await Task.Delay(delay, _time, stoppingToken).ConfigureAwait(false);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxRetryDelay.Ticks));
        }
    }

    [LoggerMessage(EventId = 3503, Level = LogLevel.Warning, Message = "Dropped {Count} {Kind} events for {Destination}: its queue held Relay:Functions:QueueCapacity ({Capacity}) events or Relay:Functions:QueueBytes ({Bytes} bytes)")]
    private static partial void LogDropped(ILogger logger, long count, string kind, string destination, int capacity, int bytes);

    [LoggerMessage(EventId = 3504, Level = LogLevel.Debug, Message = "{Kind} event {Id} to {Destination} failed on try {Attempt} ({Failure}); trying again in {DelayMs} ms")]
    private static partial void LogRetrying(ILogger logger, string kind, string id, string destination, int attempt, string failure, double delayMs);

    [LoggerMessage(EventId = 3505, Level = LogLevel.Warning, Message = "Dead letter: {Kind} event {Type} {Id} to {Destination} failed {Attempts} tries, the last with {Failure}")]
    private static partial void LogDeadLettered(ILogger logger, string kind, string type, string id, string destination, int attempts, string failure);
}
