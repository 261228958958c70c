using System.Diagnostics;
using System.Diagnostics.Metrics;
using Relay.Functions.Hooks;

namespace Relay.Functions;

/// <summary>The <c>Relay.Functions</c> meter: hook calls by outcome, webhook and after-publish deliveries, drops and dead letters.</summary>
public sealed class FunctionsMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "Relay.Functions";

    private static readonly string[] OutcomeNames = ["accept", "transform", "reject", "timeout", "error", "garbage", "overload"];

    private readonly Counter<long> _hookCalls;
    private readonly Histogram<double> _hookDuration;
    private readonly Counter<long> _delivered;
    private readonly Counter<long> _retries;
    private readonly Counter<long> _dropped;
    private readonly Counter<long> _deadLettered;
    private readonly Counter<long> _archived;
    private readonly Counter<long> _archiveFailures;
    private readonly Counter<long> _archiveDropped;

    /// <summary>Creates the meter and its instruments.</summary>
    public FunctionsMetrics(IMeterFactory meters)
    {
        ArgumentNullException.ThrowIfNull(meters);
        var meter = meters.Create(MeterName);
        _hookCalls = meter.CreateCounter<long>("relay.functions.hook.calls", description: "Before-publish hook calls by namespace and outcome (accept, transform, reject; timeout, error, garbage, overload are failures that OnFailure decides).");
        _hookDuration = meter.CreateHistogram<double>("relay.functions.hook.duration", unit: "s", description: "Time from a publish reaching routing to its hook's answer (or failure).");
        _delivered = meter.CreateCounter<long>("relay.functions.delivered", description: "Webhook and after-publish calls the receiver acknowledged (kind: webhook, after_publish).");
        _retries = meter.CreateCounter<long>("relay.functions.retries", description: "Webhook and after-publish calls tried again after a failure.");
        _dropped = meter.CreateCounter<long>("relay.functions.dropped", description: "Webhook and after-publish events dropped because their queue (Relay:Functions:QueueCapacity) was full.");
        _deadLettered = meter.CreateCounter<long>("relay.functions.dead_lettered", description: "Webhook and after-publish events given up after Relay:Functions:MaxAttempts tries.");
        _archived = meter.CreateCounter<long>("relay.functions.archive.messages", description: "Messages written to the S3 history archive.");
        _archiveFailures = meter.CreateCounter<long>("relay.functions.archive.failures", description: "Archive object writes that failed (the messages are held and written again).");
        _archiveDropped = meter.CreateCounter<long>("relay.functions.archive.dropped", description: "Messages left out of the archive because it held Relay:Functions:Archive:MaxBufferedBytes.");
    }

    internal void HookCall(string ns, HookOutcome outcome, TimeSpan elapsed)
    {
        var tags = new TagList { { "namespace", ns }, { "outcome", OutcomeNames[(int)outcome] } };
        _hookCalls.Add(1, tags);
        _hookDuration.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>("namespace", ns));
    }

    internal void Delivered(string kind) => _delivered.Add(1, new KeyValuePair<string, object?>("kind", kind));

    internal void Retried(string kind) => _retries.Add(1, new KeyValuePair<string, object?>("kind", kind));

    internal void Dropped(string kind) => _dropped.Add(1, new KeyValuePair<string, object?>("kind", kind));

    internal void Archived(int messages) => _archived.Add(messages);

    internal void ArchiveFailed() => _archiveFailures.Add(1);

    internal void ArchiveDropped() => _archiveDropped.Add(1);

    internal void DeadLettered(string kind) => _deadLettered.Add(1, new KeyValuePair<string, object?>("kind", kind));
}
