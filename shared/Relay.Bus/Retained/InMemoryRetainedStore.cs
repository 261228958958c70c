using System.Collections.Concurrent;
using Relay.Core.Channels;
using Relay.Core.Messages;

namespace Relay.Bus.Retained;

/// <summary>
/// Retained messages in this process (the in-memory bus's, <c>AddRelayBus()</c>): one table per app, changed under the
/// app's lock. A restart forgets them, as it forgets the in-memory bus's history.
/// </summary>
public sealed class InMemoryRetainedStore(TimeProvider time) : IRetainedStore
{
    // A table's cleared topics are swept once they outnumber its kept ones by this many.
    private const int ClearedSweepSlack = 1_024;

    private readonly ConcurrentDictionary<string, AppTable> _apps = new(StringComparer.Ordinal);

    /// <inheritdoc />
    public ValueTask<RetainedOutcome> SetAsync(RelayMessage message, int maxPerApp, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        var table = _apps.GetOrAdd(message.App, static _ => new AppTable());
        var now = time.GetUtcNow();
        lock (table)
        {
            if (table.Kept.TryGetValue(message.Channel, out var current) && !RetainedOrder.IsLater(message.Epoch, message.Seq, current.Epoch, current.Seq))
            {
                return ValueTask.FromResult(RetainedOutcome.Superseded);
            }

            if (table.Cleared.TryGetValue(message.Channel, out var cleared) && cleared.At + RetainedOrder.ClearRemembered > now
                && !RetainedOrder.IsLater(message.Epoch, message.Seq, cleared.Epoch, cleared.Seq))
            {
                return ValueTask.FromResult(RetainedOutcome.Superseded);
            }

            if (message.Data.IsEmpty)
            {
                table.Kept.Remove(message.Channel);
                table.Cleared[message.Channel] = (message.Epoch, message.Seq, now);
                if (table.Cleared.Count > table.Kept.Count + ClearedSweepSlack)
                {
                    table.SweepCleared(now - RetainedOrder.ClearRemembered);
                }

                return ValueTask.FromResult(RetainedOutcome.Cleared);
            }

            if (current is null && table.Kept.Count >= maxPerApp)
            {
                return ValueTask.FromResult(RetainedOutcome.Full);
            }

            table.Kept[message.Channel] = message;
            table.Cleared.Remove(message.Channel);
            return ValueTask.FromResult(RetainedOutcome.Kept);
        }
    }

    /// <inheritdoc />
    public ValueTask<bool> HasRoomForAsync(string app, string topic, int maxPerApp, CancellationToken cancellationToken)
    {
        if (!_apps.TryGetValue(app, out var table))
        {
            return ValueTask.FromResult(maxPerApp > 0);
        }

        lock (table)
        {
            return ValueTask.FromResult(table.Kept.Count < maxPerApp || table.Kept.ContainsKey(topic));
        }
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<RelayMessage>> MatchingAsync(string app, string filter, CancellationToken cancellationToken)
    {
        var found = new List<RelayMessage>();
        if (_apps.TryGetValue(app, out var table))
        {
            lock (table)
            {
                if (!ChannelName.IsPattern(filter))
                {
                    if (table.Kept.TryGetValue(filter, out var one))
                    {
                        found.Add(one);
                    }
                }
                else
                {
                    var matcher = RetainedFilter.For(filter);
                    foreach (var (topic, message) in table.Kept)
                    {
                        if (matcher.Matches(topic))
                        {
                            found.Add(message);
                        }
                    }
                }
            }
        }

        return ValueTask.FromResult<IReadOnlyList<RelayMessage>>(found);
    }

    private sealed class AppTable
    {
        public Dictionary<string, RelayMessage> Kept { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, (string Epoch, long Seq, DateTimeOffset At)> Cleared { get; } = new(StringComparer.Ordinal);

        public void SweepCleared(DateTimeOffset before)
        {
            foreach (var (topic, cleared) in Cleared)
            {
                if (cleared.At < before)
                {
                    Cleared.Remove(topic);
                }
            }
        }
    }
}
