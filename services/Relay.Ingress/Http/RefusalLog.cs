using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Relay.Core.Protocol;
using Relay.ServiceDefaults;

namespace Relay.Ingress.Http;

/// <summary>
/// Logs refused HTTP requests at a bounded rate: the first refusal of a window is logged with its reason, the rest of
/// the window only counted, and the count logged when the window ends. A client refused at request rate (bad bodies,
/// bad credentials, oversized uploads) cannot flood the log: at most two lines per <see cref="Window"/>.
/// </summary>
internal sealed partial class RefusalLog(ILogger<RefusalLog> logger, TimeProvider time) : IDisposable
{
    /// <summary>One detailed line per this long: often enough to see what is refused, seldom enough to keep a flood out.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(10);

    private readonly Lock _gate = new();
    private ITimer? _windowEnd;
    private long _suppressed;

    /// <summary>An endpoint filter for short requests: logs the error result a handler returns (<see cref="RelayErrorResult"/>).</summary>
    public static async ValueTask<object?> FilterAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        var result = await next(context).ConfigureAwait(false);
        Observe(context.HttpContext, result);
        return result;
    }

    /// <summary>
    /// An endpoint filter for streams (WebSocket, SSE), which refuse before their first wait: logs an error result that
    /// is ready at once, and otherwise adds nothing (no wait of its own held for a connection's whole life).
    /// </summary>
    public static ValueTask<object?> FilterAtOnce(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        var pending = next(context);
        if (pending.IsCompletedSuccessfully)
        {
            Observe(context.HttpContext, pending.Result);
        }

        return pending;
    }

    private static void Observe(HttpContext context, object? result)
    {
        if (result is RelayErrorResult refused)
        {
            context.RequestServices.GetRequiredService<RefusalLog>().Refused(context.Request, refused.Error);
        }
    }

    /// <summary>Logs a refusal, or counts it when this window's line is already written.</summary>
    public void Refused(HttpRequest request, RelayError error)
    {
        if (!logger.IsEnabled(LogLevel.Information))
        {
            return;
        }

        lock (_gate)
        {
            if (_windowEnd is not null)
            {
                _suppressed++;
                return;
            }

            _windowEnd = time.CreateTimer(static state => ((RefusalLog)state!).EndWindow(), this, Window, Timeout.InfiniteTimeSpan);
        }

        LogRefused(logger, request.Method, request.Path, request.HttpContext.Connection.RemoteIpAddress?.ToString(), error.StatusCode, error.Code, error.Message, Window.TotalSeconds);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _windowEnd?.Dispose();
            _windowEnd = null;
        }
    }

    private void EndWindow()
    {
        long suppressed;
        lock (_gate)
        {
            _windowEnd?.Dispose();
            _windowEnd = null;
            suppressed = _suppressed;
            _suppressed = 0;
        }

        if (suppressed > 0)
        {
            LogSuppressed(logger, suppressed, Window.TotalSeconds);
        }
    }

    [LoggerMessage(EventId = 1400, Level = LogLevel.Information, Message = "Refused {Method} {Path} from {Remote} with {Status} ({Code}): {Reason}; further refusals for {Seconds} s are only counted")]
    private static partial void LogRefused(ILogger logger, string method, PathString path, string? remote, int status, int code, string reason, double seconds);

    [LoggerMessage(EventId = 1401, Level = LogLevel.Information, Message = "Refused {Count} more HTTP requests in the last {Seconds} s (not logged one by one)")]
    private static partial void LogSuppressed(ILogger logger, long count, double seconds);
}
