using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus.Routing;
using Relay.Core.Protocol;
using Relay.Functions.Calls;

namespace Relay.Functions.Hooks;

/// <summary>
/// Wraps routing's channel authority (the in-memory one or the Redis bus's) and runs a namespace's before-publish hook
/// on each publish before the authority sequences it, and queues its after-publish hook once the authority acknowledged.
/// Requests of namespaces without hooks, and every other request, go straight to the authority: no await, no allocation.
/// </summary>
/// <remarks>
/// Order: the authorities sequence a publish in the synchronous part of their call, so callers keep a channel's order by
/// calling in order. Here a channel's hooked publishes take their place in a line as they arrive; their hooks are called
/// side by side, but each is handed to the authority only after the one before it was handed over (or refused). A hook
/// that hangs holds its channel's line until its timeout, never longer, and other channels not at all.
/// </remarks>
internal sealed partial class HookedChannelAuthority : IChannelAuthority
{
    /// <summary>At most one line a period for hook failures: a hook that is down would otherwise log once per publish.</summary>
    private static readonly TimeSpan LogPeriod = TimeSpan.FromSeconds(10);

    private readonly IChannelAuthority _inner;
    private readonly HookTable _hooks;
    private readonly FunctionCaller _caller;
    private readonly AfterPublishHooks _after;
    private readonly FunctionsMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<HookedChannelAuthority> _logger;
    private readonly int _maxPending;
    private readonly ConcurrentDictionary<(string App, string Channel), Line> _lines = new();
    private int _pending;
    private long _lastFailureLog;

    public HookedChannelAuthority(IChannelAuthority inner, HookTable hooks, FunctionCaller caller, AfterPublishHooks after, FunctionsMetrics metrics, TimeProvider time, IOptions<FunctionsOptions> options, ILogger<HookedChannelAuthority> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _inner = inner;
        _hooks = hooks;
        _caller = caller;
        _after = after;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        _maxPending = options.Value.MaxPendingHooks;
    }

    /// <summary>The authority this one wraps.</summary>
    public IChannelAuthority Inner => _inner;

    public Task RunAsync(CancellationToken stoppingToken) => _inner.RunAsync(stoppingToken);

    public ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken)
    {
        if (request is PublishRequest publish && _hooks.For(publish.Channel) is { } hooks)
        {
            return hooks.Before is { } before ? HookedAsync(publish, before, hooks.After, cancellationToken) : AcknowledgedAsync(publish, hooks.After!, _inner.HandleAsync(publish, cancellationToken));
        }

        return _inner.HandleAsync(request, cancellationToken);
    }

    private async ValueTask<RoutingReply> HookedAsync(PublishRequest request, ResolvedHook hook, ResolvedHook? after, CancellationToken cancellationToken)
    {
        // Before the first await: the place in the channel's line follows the order the bus brought the requests in.
        var key = (request.App, request.Channel);
        var (line, previous, mine) = Enter(key);
        ValueTask<RoutingReply> handed;
        RoutingReply? refused = null;
        try
        {
            var verdict = await DecideAsync(request, hook, cancellationToken).ConfigureAwait(false);
            await previous.ConfigureAwait(false);
            switch (verdict.Outcome)
            {
                case HookOutcome.Accept:
                    handed = _inner.HandleAsync(request, cancellationToken);
                    break;
                case HookOutcome.Transform:
                    handed = _inner.HandleAsync(request with { Items = verdict.Items! }, cancellationToken);
                    break;
                case HookOutcome.Reject:
                    refused = new ErrorReply(new RelayError(ErrorCodes.Forbidden, $"the before-publish hook of channel '{request.Channel}' rejected the message: {verdict.Reason}"));
                    handed = default;
                    break;
                default:
                    if (hook.FailOpen)
                    {
                        handed = _inner.HandleAsync(request, cancellationToken);
                    }
                    else
                    {
                        refused = new ErrorReply(new RelayError(ErrorCodes.Unavailable, $"the before-publish hook of channel '{request.Channel}' failed ({verdict.Reason}) and its namespace fails closed; publish again later"));
                        handed = default;
                    }

                    break;
            }
        }
        finally
        {
            // Handed over (sequenced) or refused: the next in line may go.
            mine.SetResult();
            Leave(key, line);
        }

        if (refused is not null)
        {
            return refused;
        }

        var reply = await handed.ConfigureAwait(false);
        if (after is not null && reply is PublishReply published)
        {
            _after.Enqueue(after, request, published);
        }

        return reply;
    }

    private async ValueTask<RoutingReply> AcknowledgedAsync(PublishRequest request, ResolvedHook after, ValueTask<RoutingReply> handed)
    {
        var reply = await handed.ConfigureAwait(false);
        if (reply is PublishReply published)
        {
            _after.Enqueue(after, request, published);
        }

        return reply;
    }

    private async Task<HookVerdict> DecideAsync(PublishRequest request, ResolvedHook hook, CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        HookVerdict verdict;
        if (Interlocked.Increment(ref _pending) > _maxPending)
        {
            verdict = HookVerdict.Failed(HookOutcome.Overload, $"{_maxPending} hook calls in flight (Relay:Functions:MaxPendingHooks)");
        }
        else
        {
            try
            {
                var result = await _caller.CallAsync(hook.Target, HookJson.BeforePublish(request), hook.Timeout, cancellationToken).ConfigureAwait(false);
                verdict = result.Succeeded
                    ? HookJson.ReadAnswer(result.Body!, request)
                    : HookVerdict.Failed(result.TimedOut ? HookOutcome.Timeout : HookOutcome.Error, result.Failure!);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                verdict = HookVerdict.Failed(HookOutcome.Error, "the request was cancelled");
            }
        }

        Interlocked.Decrement(ref _pending);
        _metrics.HookCall(hook.Namespace, verdict.Outcome, _time.GetElapsedTime(started));
        if (verdict.IsFailure && Due())
        {
            LogHookFailed(_logger, hook.Target.Display, request.Channel, verdict.Outcome.ToString(), verdict.Reason!, hook.FailOpen ? "published as sent (fail-open)" : "refused (fail-closed)");
        }

        return verdict;
    }

    private (Line Line, Task Previous, TaskCompletionSource Mine) Enter((string, string) key)
    {
        while (true)
        {
            var line = _lines.GetOrAdd(key, static _ => new Line());
            lock (line)
            {
                if (line.Closed)
                {
                    continue;
                }

                line.Users++;
                var previous = line.Tail;
                var mine = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                line.Tail = mine.Task;
                return (line, previous, mine);
            }
        }
    }

    private void Leave((string, string) key, Line line)
    {
        lock (line)
        {
            if (--line.Users == 0)
            {
                line.Closed = true;
                _lines.TryRemove(new KeyValuePair<(string, string), Line>(key, line));
            }
        }
    }

    private bool Due()
    {
        var now = _time.GetTimestamp();
        var last = Interlocked.Read(ref _lastFailureLog);
        return (last == 0 || _time.GetElapsedTime(last, now) >= LogPeriod) && Interlocked.CompareExchange(ref _lastFailureLog, now, last) == last;
    }

    [LoggerMessage(EventId = 3500, Level = LogLevel.Warning, Message = "Before-publish hook {Target} failed for channel {Channel} ({Outcome}: {Reason}); the publish was {Decision}")]
    private static partial void LogHookFailed(ILogger logger, string target, string channel, string outcome, string reason, string decision);

    /// <summary>A channel's line of hooked publishes: the tail is the last one's "handed over" signal.</summary>
    private sealed class Line
    {
        public Task Tail { get; set; } = Task.CompletedTask;

        public int Users { get; set; }

        public bool Closed { get; set; }
    }
}
