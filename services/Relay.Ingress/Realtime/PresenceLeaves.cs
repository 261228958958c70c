using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Relay.Bus;
using Relay.Bus.Routing;
using Relay.Core.Protocol;

namespace Relay.Ingress.Realtime;

/// <summary>
/// Presence leaves of closed connections that the bus could not take (Redis down, routing not answering), sent again
/// until they go through, so a client that left during an outage does not stay a member until its node dies. One
/// queue per node, bounded (<see cref="MaxPending"/>); a leave is idempotent (a member already gone is left alone, with
/// no event), so one that went through although its answer was lost does no harm when sent again.
/// </summary>
internal sealed partial class PresenceLeaves(IRelayBus bus, TimeProvider time, ILogger logger)
{
    /// <summary>
    /// 100,000 leaves (~200 B each, ~20 MB): every member of a node at its default limits several times over. Past it a
    /// leave is dropped (logged), and its member stays until the node dies, as every failed leave did before.
    /// </summary>
    public const int MaxPending = 100_000;

    /// <summary>Leaves in flight at once: a backlog after an outage drains in round trips of 64, not one by one.</summary>
    private const int Concurrency = 64;

    /// <summary>First wait after a round that sent nothing; doubled up to <see cref="MaxDelay"/> while the bus stays down.</summary>
    private static readonly TimeSpan MinDelay = TimeSpan.FromSeconds(1);

    /// <summary>Longest wait between rounds: a leave goes through within this of the bus coming back.</summary>
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(5);

    private readonly ConcurrentQueue<PresenceRequest> _pending = new();
    private int _count;
    private long _dropped;

    /// <summary>Leaves waiting to be sent again.</summary>
    public int Pending => Volatile.Read(ref _count);

    /// <summary>Leaves dropped because <see cref="MaxPending"/> were waiting.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Queues a leave the bus refused or did not answer; false (and logged) when the queue is full.</summary>
    public bool Retry(PresenceRequest leave)
    {
        ArgumentNullException.ThrowIfNull(leave);
        var count = Interlocked.Increment(ref _count);
        if (count > MaxPending)
        {
            Interlocked.Decrement(ref _count);
            if (Interlocked.Increment(ref _dropped) == 1)
            {
                LogDropped(logger, MaxPending);
            }

            return false;
        }

        _pending.Enqueue(leave);
        if (count == 1)
        {
            LogQueued(logger, leave.Channel);
        }

        return true;
    }

    /// <summary>Sends the queued leaves again until <paramref name="stoppingToken"/> fires; backs off while none goes through.</summary>
    public async Task RunAsync(CancellationToken stoppingToken)
    {
        var delay = MinDelay;
        var batch = new List<PresenceRequest>(Concurrency);
        var sent = 0L;
        try
        {
            while (true)
            {
                await Task.Delay(delay, time, stoppingToken).ConfigureAwait(false);
                batch.Clear();
                while (batch.Count < Concurrency && _pending.TryDequeue(out var leave))
                {
                    batch.Add(leave);
                }

                if (batch.Count == 0)
                {
                    delay = MinDelay;
                    continue;
                }

                var results = await Task.WhenAll(batch.Select(leave => SendAsync(leave, stoppingToken))).ConfigureAwait(false);
                var failed = 0;
                for (var i = 0; i < batch.Count; i++)
                {
                    if (results[i])
                    {
                        Interlocked.Decrement(ref _count);
                        sent++;
                    }
                    else
                    {
                        failed++;
                        _pending.Enqueue(batch[i]);
                    }
                }

                // All failed: the bus is still down, wait longer. Some went through: go on at once with the rest.
                delay = failed == batch.Count ? TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxDelay.Ticks)) : TimeSpan.Zero;
                if (Pending == 0)
                {
                    LogDrained(logger, sent);
                    sent = 0;
                    delay = MinDelay;
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: what is left goes with the node (fan-out evicts a node's members when it stops heart-beating).
        }
    }

    /// <summary>True when the leave is done with: applied, or refused for good (it would never go through).</summary>
    private async Task<bool> SendAsync(PresenceRequest leave, CancellationToken stoppingToken)
    {
        try
        {
            var reply = await bus.SendToRoutingAsync(leave, stoppingToken).ConfigureAwait(false);
            return reply is not ErrorReply { Error.Code: ErrorCodes.Unavailable or ErrorCodes.Internal };
        }
        catch (Exception ex) when (ex is not OperationCanceledException && ex is not OutOfMemoryException)
        {
            return false;
        }
    }

    [LoggerMessage(EventId = 1010, Level = LogLevel.Warning, Message = "A presence leave (channel {Channel}) could not be sent to routing; it and any others are sent again until the bus takes them")]
    private static partial void LogQueued(ILogger logger, string channel);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Information, Message = "{Sent} presence leaves that had failed went through")]
    private static partial void LogDrained(ILogger logger, long sent);

    [LoggerMessage(EventId = 1012, Level = LogLevel.Error, Message = "{Max} presence leaves are waiting to be sent again; further ones are dropped, and their members stay until this node stops")]
    private static partial void LogDropped(ILogger logger, int max);
}
