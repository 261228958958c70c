using System.Diagnostics;
using Relay.Bus.Routing;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.Core.Namespaces;
using Relay.Core.Protocol;

namespace Relay.Bus.Redis;

/// <summary>
/// The channel authority a routing host serves when channel state lives in Redis (registered by <c>AddRedis()</c>): seq, epoch, history and
/// the idempotency window through <see cref="RedisChannelLog"/>, presence through <see cref="RedisPresence"/>. Each publish
/// is one Lua script that appends and hands the message to fan-out, fenced by the token this instance's lease on the shard
/// was taken with, so a shard's former owner can never append to a channel once the new owner wrote to it. Nothing is held in this process: any instance that takes a
/// shard over continues where the last one stopped.
/// </summary>
internal sealed class RedisChannelAuthority(RedisBus bus, NamespacePolicies namespaces) : IChannelAuthority
{
    private RedisChannelLog? _log;

    // Requests arrive only once the bus is connected (the lease loop waits for it).
    private RedisChannelLog Log => _log ??= new RedisChannelLog(bus.Database);

    /// <summary>Nothing to sweep (keys expire in Redis): waits until stopped.</summary>
    public async Task RunAsync(CancellationToken stoppingToken)
    {
        try
        {
            await Task.Delay(Timeout.Infinite, stoppingToken).ConfigureAwait(false);
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
            PublishRequest publish => PublishAsync(publish),
            HistoryRequest history => HistoryAsync(history),
            PositionRequest position => PositionAsync(position),
            PresenceEventsRequest events => PresenceEventsAsync(events),
            PresenceRequest presence => PresenceAsync(presence),
            PresenceGetRequest get => MembersAsync(get),
            _ => throw new ArgumentException($"unknown routing request {request.GetType().Name}", nameof(request)),
        };
    }

    private async ValueTask<RoutingReply> PublishAsync(PublishRequest request)
    {
        using var activity = RelayTracing.Start(RelayTracing.RoutingSequence, ActivityKind.Internal, request.TraceParent, request.Channel);
        var traceParent = activity?.Id ?? request.TraceParent;
        var policy = namespaces.For(request.Channel);
        if (bus.FenceFor(request.App, request.Channel) is not { } fence)
        {
            return NotOwnerReply.Instance;
        }

        var publishTo = bus.FanOutChannelFor(request.App, request.Channel);

        // Every append is written before the first is awaited: Redis runs them in this order, so seqs follow the request.
        var appends = new Task<ChannelAppendResult?>[request.Items.Count];
        for (var i = 0; i < appends.Length; i++)
        {
            var item = request.Items[i];
            var body = BusCodec.EncodeBody(new RelayMessage
            {
                App = request.App,
                Channel = request.Channel,
                Epoch = "",
                Id = item.Id,
                Name = item.Name,
                Data = item.Data,
                DataIsJson = item.DataIsJson,
                ClientId = request.ClientId,
                TraceParent = traceParent,
                Properties = item.Properties,
            });
            appends[i] = Log.AppendAndPublishAsync(
                request.App,
                request.Channel,
                item.Id,
                body,
                policy.HistorySize,
                policy.HistoryTtl,
                PublishRequest.IdempotencyWindow,
                publishTo,
                fence,
                request.Origin,
                i);
        }

        // With replicas to wait for, WAIT goes out right behind the appends and covers them.
        var replicas = bus.Options.ReplicasToAcknowledge;
        var replicated = replicas > 0 ? Log.WaitForReplicasAsync(request.App, request.Channel, replicas, bus.Options.ReplicationTimeout) : null;
        var seqs = new long[appends.Length];
        var epoch = "";
        for (var i = 0; i < appends.Length; i++)
        {
            if (await appends[i].ConfigureAwait(false) is not { } appended)
            {
                return NotOwnerReply.Instance;
            }

            if (appended.HandledBefore)
            {
                // A late copy of an attempt its sender sent again: the first handling answers.
                return HandledBeforeReply.Instance;
            }

            seqs[i] = appended.Seq;
            epoch = appended.Epoch;
        }

        if (replicated is not null && await replicated.ConfigureAwait(false) is var acknowledged && acknowledged < replicas)
        {
            return new ErrorReply(new RelayError(ErrorCodes.Unavailable, $"{acknowledged} of {replicas} Redis replicas confirmed the publish within {bus.Options.ReplicationTimeout.TotalSeconds:0.###} s; publish again with the same id"));
        }

        return new PublishReply(seqs, epoch);
    }

    private async ValueTask<RoutingReply> HistoryAsync(HistoryRequest request)
    {
        var limit = Math.Max(1, request.Limit);
        if (request.AfterSeq is { } after)
        {
            var read = await Log.ReadAfterAsync(request.App, request.Channel, after, limit).ConfigureAwait(false);

            // A seq beyond the channel's last cannot have come from this epoch: nothing after it can be promised.
            return new HistoryReply(new ChannelPosition(read.Epoch, read.Seq) { PresenceSeq = read.PresenceSeq }, Messages(request, read), read.Complete && after <= read.Seq);
        }

        var page = request.Before is { } before
            ? await Log.ReadBeforeAsync(request.App, request.Channel, before, limit, request.MaxBytes).ConfigureAwait(false)
            : await Log.ReadLastAsync(request.App, request.Channel, limit, request.MaxBytes).ConfigureAwait(false);
        return new HistoryReply(new ChannelPosition(page.Epoch, page.Seq) { PresenceSeq = page.PresenceSeq }, Messages(request, page), Complete: true, page.Truncated);
    }

    private static List<RelayMessage> Messages(RoutingRequest request, ChannelReadResult read)
    {
        var messages = new List<RelayMessage>(read.Messages.Count);
        foreach (var entry in read.Messages)
        {
            var message = BusCodec.DecodeBody(entry.Payload, entry.Seq, entry.Timestamp, read.Epoch, presenceAction: null);
            if (message.App == request.App && message.Channel == request.Channel)
            {
                messages.Add(message);
            }
        }

        return messages;
    }

    private async ValueTask<RoutingReply> PositionAsync(PositionRequest request)
    {
        var position = await Log.PositionAsync(request.App, request.Channel).ConfigureAwait(false);
        return new PositionReply(new ChannelPosition(position.Epoch, position.Seq) { PresenceSeq = position.PresenceSeq });
    }

    private async ValueTask<RoutingReply> PresenceEventsAsync(PresenceEventsRequest request)
    {
        var read = await bus.Presence.ReadAfterAsync(request.App, request.Channel, request.AfterSeq, Math.Max(1, request.Limit)).ConfigureAwait(false);
        var events = read.Events.Where(e => e.App == request.App && e.Channel == request.Channel).ToList();

        // A number beyond the channel's last cannot have come from this epoch: nothing after it can be promised.
        return new HistoryReply(new ChannelPosition(read.Epoch, 0) { PresenceSeq = read.PresenceSeq }, events, read.Complete && request.AfterSeq <= read.PresenceSeq);
    }

    private async ValueTask<RoutingReply> PresenceAsync(PresenceRequest request)
    {
        var record = new RelayMessage
        {
            App = request.App,
            Channel = request.Channel,
            Epoch = "",
            ClientId = request.ClientId,
            ConnectionId = request.ConnectionId,
            Data = request.Data,
        };
        var max = namespaces.For(request.Channel).MaxPresenceMembers;
        if (bus.FenceFor(request.App, request.Channel) is not { } fence)
        {
            return NotOwnerReply.Instance;
        }

        return await bus.Presence.ChangeAsync(request.Action, request.NodeId ?? "unknown", record, bus.FanOutChannelFor(request.App, request.Channel), fence, max).ConfigureAwait(false) switch
        {
            PresenceChangeResult.Applied => new PresenceReply([]),
            PresenceChangeResult.Full => ErrorReply.PresenceFull(max, request.Channel),
            _ => NotOwnerReply.Instance,
        };
    }

    private async ValueTask<RoutingReply> MembersAsync(PresenceGetRequest request) =>
        new PresenceReply(await bus.Presence.MembersAsync(request.App, request.Channel).ConfigureAwait(false));
}
