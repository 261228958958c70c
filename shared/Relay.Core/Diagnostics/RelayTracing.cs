using System.Diagnostics;

namespace Relay.Core.Diagnostics;

/// <summary>
/// The spans one published message produces on its way: <c>ingress.receive</c> → <c>routing.sequence</c> →
/// <c>fanout.dispatch</c> → <c>ingress.deliver</c> (once per node, never per subscriber). W3C trace context travels in
/// the envelopes (<c>PublishRequest.TraceParent</c>, <c>RelayMessage.TraceParent</c>), so the spans of every
/// process on the path share one trace. With nothing listening, starting a span costs a null check.
/// </summary>
public static class RelayTracing
{
    /// <summary>The <see cref="ActivitySource"/> name to export (<c>AddSource("Relay")</c>).</summary>
    public const string SourceName = "Relay";

    public const string IngressReceive = "ingress.receive";
    public const string RoutingSequence = "routing.sequence";
    public const string FanOutDispatch = "fanout.dispatch";
    public const string IngressDeliver = "ingress.deliver";

    public static ActivitySource Source { get; } = new(SourceName);

    /// <summary>
    /// Starts a span whose parent is the current span when there is one (same process), else <paramref name="traceParent"/>
    /// (a W3C <c>traceparent</c> from an envelope or a client); null when nobody listens.
    /// </summary>
    public static Activity? Start(string name, ActivityKind kind, string? traceParent, string? channel)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        ActivityContext parent = default;
        if (Activity.Current is null && traceParent is not null)
        {
            _ = ActivityContext.TryParse(traceParent, null, isRemote: true, out parent);
        }

        var activity = Activity.Current is null ? Source.StartActivity(name, kind, parent) : Source.StartActivity(name, kind);
        if (activity is not null && channel is not null)
        {
            activity.SetTag("messaging.system", "relay");
            activity.SetTag("messaging.destination.name", channel);
        }

        return activity;
    }

    /// <summary>
    /// Starts the span of a request a client sent over a long-lived connection: its parent is the client's W3C
    /// <paramref name="traceParent"/> when that parses, else none (a new trace); never the span that happens to be current
    /// (on a connection served as an HTTP request, that is the upgrade's, which lasts as long as the connection). Null when
    /// nobody listens.
    /// </summary>
    public static Activity? StartFromClient(string name, ActivityKind kind, string? traceParent, string? channel)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        // An invalid traceparent is ignored, as an HTTP server ignores an invalid header: the request still runs.
        _ = ActivityContext.TryParse(traceParent, null, isRemote: true, out var parent);
        var ambient = Activity.Current;
        Activity.Current = null;
        var activity = Source.StartActivity(name, kind, parent);
        if (activity is null)
        {
            Activity.Current = ambient;
        }
        else if (channel is not null)
        {
            activity.SetTag("messaging.system", "relay");
            activity.SetTag("messaging.destination.name", channel);
        }

        return activity;
    }
}
