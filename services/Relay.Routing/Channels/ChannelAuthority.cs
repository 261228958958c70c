using System.Collections.Concurrent;
using System.Diagnostics;
using Relay.Bus;
using Relay.Bus.Routing;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.Core.Namespaces;

namespace Relay.Routing.Channels;

/// <summary>
/// The routing shard's request handler: gives each message its seq, keeps history and the idempotency window,
/// and hands sequenced messages to fan-out in seq order (inside the channel's gate).
/// </summary>
public sealed class ChannelAuthority : IRoutingHandler
{
    private readonly ConcurrentDictionary<ChannelKey, ChannelState> _channels = new();
    private readonly IRelayBus _bus;
    private readonly TimeProvider _time;
    private readonly NamespacePolicies _namespaces;
    private readonly Func<ChannelKey, ChannelState> _create;

    /// <summary>Creates the authority.</summary>
    public ChannelAuthority(IRelayBus bus, TimeProvider time, NamespacePolicies namespaces)
    {
        _bus = bus;
        _time = time;
        _namespaces = namespaces;
        _create = key => new ChannelState(ChannelState.NewEpoch(), _namespaces.For(key.Channel));
    }

    /// <summary>How many channels are held in memory.</summary>
    public int ChannelCount => _channels.Count;

    /// <inheritdoc />
    public ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request switch
        {
            PublishRequest publish => Publish(publish),
            HistoryRequest history => ValueTask.FromResult(History(history)),
            PositionRequest position => ValueTask.FromResult<RoutingReply>(Position(position)),
            PresenceRequest presence => Presence(presence),
            PresenceGetRequest get => ValueTask.FromResult(PresenceMembers(get)),
            _ => throw new ArgumentException($"unknown routing request {request.GetType().Name}", nameof(request)),
        };
    }

    private async ValueTask<RoutingReply> Publish(PublishRequest request)
    {
        // The messages carry this span's context on to fan-out and every node.
        using var activity = RelayTracing.Start(RelayTracing.RoutingSequence, ActivityKind.Internal, request.TraceParent, request.Channel);
        if (activity is not null)
        {
            request = request with { TraceParent = activity.Id };
        }

        var (reply, pending) = InGate(request, static (state, now, request, self) =>
        {
            var seqs = new long[request.Items.Count];
            ValueTask pending = default;
            for (var i = 0; i < seqs.Length; i++)
            {
                var item = request.Items[i];
                if (item.Id is not null && state.TryGetRecentId(item.Id, now, out var firstSeq))
                {
                    seqs[i] = firstSeq;
                    continue;
                }

                var message = new RelayMessage
                {
                    App = request.App,
                    Channel = request.Channel,
                    Seq = state.NextSeq(),
                    Epoch = state.Epoch,
                    Id = item.Id,
                    Name = item.Name,
                    Data = item.Data,
                    DataIsJson = item.DataIsJson,
                    ClientId = request.ClientId,
                    Timestamp = now,
                    TraceParent = request.TraceParent,
                };
                seqs[i] = message.Seq;
                if (item.Id is not null)
                {
                    state.RememberId(item.Id, message.Seq, now + (long)RoutingOptions.IdempotencyWindow.TotalMilliseconds);
                }

                state.Append(message);

                // Handed over inside the gate so that fan-out sees this channel's messages in seq order.
                pending = Then(pending, self._bus.PublishSequencedAsync(message));
            }

            return ((RoutingReply)new PublishReply(seqs, state.Epoch), pending);
        });

        await pending.ConfigureAwait(false);
        return reply;
    }

    private RoutingReply History(HistoryRequest request) => InGate(request, static (state, _, request, _) =>
    {
        var position = new ChannelPosition(state.Epoch, state.Seq);
        if (request.AfterSeq is { } after)
        {
            var (messages, complete) = state.ReadForward(request.Limit, after);
            return new HistoryReply(position, messages, complete);
        }

        return new HistoryReply(position, state.ReadBackward(request.Limit, request.Before ?? long.MaxValue), Complete: true);
    });

    private PositionReply Position(PositionRequest request) =>
        InGate(request, static (state, _, _, _) => new PositionReply(new ChannelPosition(state.Epoch, state.Seq)));

    private async ValueTask<RoutingReply> Presence(PresenceRequest request)
    {
        var handOff = InGate(request, static (state, now, request, self) =>
        {
            var record = new RelayMessage
            {
                App = request.App,
                Channel = request.Channel,
                Epoch = state.Epoch,
                ClientId = request.ClientId,
                ConnectionId = request.ConnectionId,
                Data = request.Data,
                PresenceAction = request.Action,
                Timestamp = now,
            };
            var presenceEvent = request.Action == "leave" ? state.RemoveMember(record) : state.SetMember(record);

            // Inside the gate, so presence events keep their order with the channel's messages.
            return presenceEvent is null ? default : self._bus.PublishSequencedAsync(presenceEvent);
        });

        await handOff.ConfigureAwait(false);
        return new PresenceReply([]);
    }

    private RoutingReply PresenceMembers(PresenceGetRequest request) =>
        InGate(request, static (state, _, _, _) => new PresenceReply(state.Members()));

    /// <summary>
    /// Runs <paramref name="action"/> inside the channel's gate with expired history dropped. A state the sweep
    /// retired meanwhile is looked up again, so no request ever lands on a forgotten channel.
    /// </summary>
    private TResult InGate<TRequest, TResult>(TRequest request, Func<ChannelState, long, TRequest, ChannelAuthority, TResult> action)
        where TRequest : RoutingRequest
    {
        while (true)
        {
            var state = GetState(request.App, request.Channel);
            lock (state.Gate)
            {
                if (state.Retired)
                {
                    continue;
                }

                var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
                state.LastUsed = now;
                state.ExpireHistory(now);
                return action(state, now, request, this);
            }
        }
    }

    private static ValueTask Then(ValueTask pending, ValueTask next) =>
        next.IsCompletedSuccessfully ? pending : pending.IsCompletedSuccessfully ? next : Chain(pending, next);

    private static async ValueTask Chain(ValueTask first, ValueTask second)
    {
        await first.ConfigureAwait(false);
        await second.ConfigureAwait(false);
    }

    private ChannelState GetState(string app, string channel) =>
        _channels.GetOrAdd(new ChannelKey(app, channel), _create);

    /// <summary>
    /// Drops channels whose history and idempotency window have both run out and that were not used since:
    /// nothing about them is left to keep, and a later use starts a new epoch (the history was lost).
    /// </summary>
    public int Sweep()
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var removed = 0;
        foreach (var (key, state) in _channels)
        {
            lock (state.Gate)
            {
                var idle = Math.Max((long)state.Policy.HistoryTtl.TotalMilliseconds, (long)RoutingOptions.IdempotencyWindow.TotalMilliseconds);
                state.ExpireHistory(now);
                state.Sweep(now);
                if (now - state.LastUsed < idle || state.HasHistory || state.HasRecentIds || state.HasMembers)
                {
                    continue;
                }

                state.Retired = true;
                _channels.TryRemove(new KeyValuePair<ChannelKey, ChannelState>(key, state));
                removed++;
            }
        }

        return removed;
    }
}
