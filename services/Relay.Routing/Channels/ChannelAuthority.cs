using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using Relay.Bus;
using Relay.Bus.Routing;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.Core.Namespaces;
using Relay.Core.Protocol;

namespace Relay.Routing.Channels;

/// <summary>
/// The routing shard's request handler: gives each message its seq, keeps history and the idempotency window,
/// and hands sequenced messages to fan-out in seq order (inside the channel's gate).
/// </summary>
/// <remarks>
/// Only a publish or a presence enter creates a channel's state. A read (position, history, presence get) of a channel
/// that has none answers seq 0 in the epoch the channel would get now and keeps nothing, so reading any number of
/// names costs no memory (200,000 names over one socket held ~65 MB of states for minutes before). That epoch is a
/// keyed hash of the channel and a generation counter of its stripe: the state a later publish creates takes the
/// same epoch (a subscriber of the empty channel recovers with <c>since</c>), and forgetting a channel that had
/// messages moves its stripe on, so the channel never gets that epoch again.
/// </remarks>
public sealed class ChannelAuthority : IChannelAuthority
{
    /// <summary>
    /// Generation stripes (256 KB): forgetting a channel moves on every channel of its stripe, so a channel read while
    /// empty and first published after another channel of its stripe was forgotten reports a new epoch
    /// (<c>recovered: false</c>, never a wrong recovery). With 65,536 stripes that is rare.
    /// </summary>
    private const int EpochStripes = 1 << 16;

    private readonly ConcurrentDictionary<ChannelKey, ChannelState> _channels = new();
    private readonly byte[] _epochKey = RandomNumberGenerator.GetBytes(32);
    private readonly int[] _generations = new int[EpochStripes];
    private readonly IRelayBus _bus;
    private readonly TimeProvider _time;
    private readonly NamespacePolicies _namespaces;
    private readonly Func<ChannelKey, ChannelState> _create;
    private readonly TimeSpan _sweepInterval;

    /// <summary>Creates the authority; <paramref name="options"/> gives the sweep interval (<c>Relay:Routing:SweepInterval</c>).</summary>
    public ChannelAuthority(IRelayBus bus, TimeProvider time, NamespacePolicies namespaces, IOptions<RoutingOptions>? options = null)
    {
        _bus = bus;
        _time = time;
        _namespaces = namespaces;
        _sweepInterval = (options?.Value ?? new RoutingOptions()).SweepInterval;
        _create = key => new ChannelState(EpochOf(key), _namespaces.For(key.Channel));
    }

    /// <summary>How many channels are held in memory.</summary>
    public int ChannelCount => _channels.Count;

    /// <summary>Sweeps idle channels every <see cref="RoutingOptions.SweepInterval"/> until stopped.</summary>
    public async Task RunAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_sweepInterval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                Sweep();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    /// <inheritdoc />
    public ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request switch
        {
            PublishRequest publish => Publish(publish),
            HistoryRequest history => ValueTask.FromResult(History(history)),
            PositionRequest position => ValueTask.FromResult<RoutingReply>(Position(position)),
            PresenceEventsRequest events => ValueTask.FromResult<RoutingReply>(PresenceEvents(events)),
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
                    Properties = item.Properties,
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

    private RoutingReply History(HistoryRequest request) => ReadGate(
        request,
        static (state, request) =>
        {
            var position = new ChannelPosition(state.Epoch, state.Seq);
            if (request.AfterSeq is { } after)
            {
                var (messages, complete) = state.ReadForward(request.Limit, after);
                return new HistoryReply(position, messages, complete);
            }

            var (page, truncated) = state.ReadBackward(request.Limit, request.Before ?? long.MaxValue, request.MaxBytes);
            return new HistoryReply(position, page, Complete: true, truncated);
        },
        // Nothing was ever published: all after seq 0 is held (none), a later seq cannot be from this epoch.
        static (epoch, request) => new HistoryReply(new ChannelPosition(epoch, 0), [], Complete: request.AfterSeq is null or 0));

    private PositionReply Position(PositionRequest request) => ReadGate(
        request,
        static (state, _) => new PositionReply(new ChannelPosition(state.Epoch, state.Seq)),
        static (epoch, _) => new PositionReply(new ChannelPosition(epoch, 0)));

    // Presence events are not numbered or kept here: the in-memory bus loses no delivery, so no node asks.
    private HistoryReply PresenceEvents(PresenceEventsRequest request) => ReadGate(
        request,
        static (state, _) => new HistoryReply(new ChannelPosition(state.Epoch, state.Seq), [], Complete: false),
        static (epoch, _) => new HistoryReply(new ChannelPosition(epoch, 0), [], Complete: false));

    private async ValueTask<RoutingReply> Presence(PresenceRequest request)
    {
        // Leaving a channel that has no state has nothing to remove; it must not create one.
        if (request.Action == "leave" && !_channels.ContainsKey(new ChannelKey(request.App, request.Channel)))
        {
            return new PresenceReply([]);
        }

        var (refused, handOff) = InGate(request, static (state, now, request, self) =>
        {
            if (request.Action != "leave" && !state.HasRoomFor(request.ClientId, request.ConnectionId))
            {
                return (ErrorReply.PresenceFull(state.Policy.MaxPresenceMembers, request.Channel), default(ValueTask));
            }

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
            return ((RoutingReply?)null, presenceEvent is null ? default : self._bus.PublishSequencedAsync(presenceEvent));
        });

        if (refused is not null)
        {
            return refused;
        }

        await handOff.ConfigureAwait(false);
        return new PresenceReply([]);
    }

    private RoutingReply PresenceMembers(PresenceGetRequest request) => ReadGate(
        request,
        static (state, _) => new PresenceReply(state.Members()),
        static (_, _) => new PresenceReply([]));

    /// <summary>
    /// Runs <paramref name="read"/> inside the channel's gate when the channel has state, else answers with
    /// <paramref name="empty"/> and the epoch the channel would get now, creating nothing.
    /// </summary>
    private TResult ReadGate<TRequest, TResult>(TRequest request, Func<ChannelState, TRequest, TResult> read, Func<string, TRequest, TResult> empty)
        where TRequest : RoutingRequest
    {
        var key = new ChannelKey(request.App, request.Channel);
        while (true)
        {
            if (!_channels.TryGetValue(key, out var state))
            {
                return empty(EpochOf(key), request);
            }

            lock (state.Gate)
            {
                if (state.Retired)
                {
                    continue;
                }

                var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
                state.LastUsed = now;
                state.ExpireHistory(now);
                return read(state, request);
            }
        }
    }

    /// <summary>The epoch a channel without state gets now: the same for every read until its stripe moves on.</summary>
    private string EpochOf(ChannelKey key)
    {
        var generation = Volatile.Read(ref _generations[StripeOf(key)]);
        var length = Encoding.UTF8.GetByteCount(key.App) + Encoding.UTF8.GetByteCount(key.Channel) + 1 + sizeof(int);
        Span<byte> input = length <= 1024 ? stackalloc byte[length] : new byte[length];
        var written = Encoding.UTF8.GetBytes(key.App, input);
        input[written++] = 0;
        written += Encoding.UTF8.GetBytes(key.Channel, input[written..]);
        BitConverter.TryWriteBytes(input[written..], generation);
        Span<byte> hash = stackalloc byte[HMACSHA256.HashSizeInBytes];
        HMACSHA256.HashData(_epochKey, input, hash);
        return Convert.ToHexStringLower(hash[..ChannelState.EpochBytes]);
    }

    private static int StripeOf(ChannelKey key) => (int)((uint)HashCode.Combine(key.App, key.Channel) % EpochStripes);

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

                // The stripe moves on before the state leaves the table: whoever creates the channel again sees the new
                // generation, so a channel whose seqs were handed out never gets the same epoch twice. A channel that
                // never had a message (presence only) may get its epoch again: no seq of it was ever seen.
                if (state.Seq > 0)
                {
                    Interlocked.Increment(ref _generations[StripeOf(key)]);
                }

                state.Retired = true;
                _channels.TryRemove(new KeyValuePair<ChannelKey, ChannelState>(key, state));
                removed++;
            }
        }

        return removed;
    }
}
