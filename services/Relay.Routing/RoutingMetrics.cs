using System.Diagnostics.Metrics;
using Relay.Bus.Routing;

namespace Relay.Routing;

/// <summary>
/// The routing service's meter (<c>Relay.Routing</c>): the requests its channel authority handled, by kind and outcome,
/// and the messages it sequenced. It wraps the authority the service puts on the bus. Plain interlocked counts read by
/// observable instruments, so a publish costs two increments and no tag lookup.
/// </summary>
internal sealed class RoutingMetrics : IRoutingHandler
{
    public const string MeterName = "Relay.Routing";

    private static readonly string[] s_kinds = ["publish", "history", "position", "presence", "presence_get", "presence_events", "other"];

    // ok: answered; error: answered with a protocol error (a full channel, a bad request, Redis refusing a write);
    // not_owner: another routing instance holds the channel's shard (the bus takes it on); failed: the handler threw.
    private static readonly string[] s_outcomes = ["ok", "error", "not_owner", "failed"];

    private readonly IRoutingHandler _inner;
    private readonly long[] _requests = new long[s_kinds.Length * s_outcomes.Length];
    private long _messages;

    public RoutingMetrics(IRoutingHandler inner, IMeterFactory meters)
    {
        _inner = inner;
        var meter = meters.Create(MeterName);
        meter.CreateObservableCounter("relay.routing.requests", Requests, description: "Routing requests this instance's channel authority handled, by kind and outcome (ok, error: a protocol error, not_owner: another instance holds the shard, failed: an exception).");
        meter.CreateObservableCounter("relay.routing.messages_sequenced", () => Interlocked.Read(ref _messages), description: "Messages this instance appended to channels (each publish request carries one or more).");
    }

    public ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken)
    {
        var kind = KindOf(request);
        ValueTask<RoutingReply> handling;
        try
        {
            handling = _inner.HandleAsync(request, cancellationToken);
        }
        catch
        {
            Count(kind, 3);
            throw;
        }

        if (handling.IsCompletedSuccessfully)
        {
            var reply = handling.Result;
            Count(request, kind, reply);
            return ValueTask.FromResult(reply);
        }

        return CountWhenDoneAsync(request, kind, handling);
    }

    private async ValueTask<RoutingReply> CountWhenDoneAsync(RoutingRequest request, int kind, ValueTask<RoutingReply> handling)
    {
        RoutingReply reply;
        try
        {
            reply = await handling.ConfigureAwait(false);
        }
        catch
        {
            Count(kind, 3);
            throw;
        }

        Count(request, kind, reply);
        return reply;
    }

    private void Count(RoutingRequest request, int kind, RoutingReply reply)
    {
        var outcome = reply switch
        {
            ErrorReply => 1,
            NotOwnerReply => 2,
            _ => 0,
        };
        Count(kind, outcome);
        if (outcome == 0 && request is PublishRequest publish)
        {
            Interlocked.Add(ref _messages, publish.Items.Count);
        }
    }

    private void Count(int kind, int outcome) => Interlocked.Increment(ref _requests[(kind * s_outcomes.Length) + outcome]);

    private static int KindOf(RoutingRequest request) => request switch
    {
        PublishRequest => 0,
        HistoryRequest => 1,
        PositionRequest => 2,
        PresenceRequest => 3,
        PresenceGetRequest => 4,
        PresenceEventsRequest => 5,
        _ => 6,
    };

    private IEnumerable<Measurement<long>> Requests()
    {
        for (var kind = 0; kind < s_kinds.Length; kind++)
        {
            for (var outcome = 0; outcome < s_outcomes.Length; outcome++)
            {
                var count = Interlocked.Read(ref _requests[(kind * s_outcomes.Length) + outcome]);
                if (count > 0)
                {
                    yield return new Measurement<long>(count, new KeyValuePair<string, object?>("kind", s_kinds[kind]), new KeyValuePair<string, object?>("outcome", s_outcomes[outcome]));
                }
            }
        }
    }
}
