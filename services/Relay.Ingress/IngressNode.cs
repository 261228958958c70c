using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Security.Cryptography;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification;
using Relay.Bus;
using Relay.Bus.Connections;
using Relay.Bus.FanOut;
using Relay.Bus.Routing;
using Relay.Core.Channels;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.Core.Namespaces;
using Relay.Core.Protocol;
using Relay.Ingress.Realtime;
using Relay.Ingress.Sending;
using Relay.Ingress.Limits;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress;

/// <summary>
/// This ingress node: its id on the bus, its connections and subscription index, and the one background loop
/// that checks token expiry, close deadlines and key changes for every connection (no timer per connection).
/// </summary>
public sealed partial class IngressNode : INodeHandler, IHostedLifecycleService, IDisposable
{
    /// <summary>The most messages a <c>rewind</c> replays (as a history page).</summary>
    private const int MaxRewind = 1000;

    private readonly ConcurrentDictionary<string, INodeConnection> _connections = new(StringComparer.Ordinal);
    private readonly ILogger<IngressNode> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly GapRepair? _gaps;
    private readonly Lock[] _interestGates = [.. Enumerable.Range(0, 64).Select(static _ => new Lock())];

    // The messages dispatched lately, once a listener orders subscriptions by arrival (KeepRecentDispatches).
    private RecentDispatches? _recent;
    private IDisposable? _registration;
    private Task? _sweep;
    private Task? _leaves;

    /// <summary>Creates the node.</summary>
    public IngressNode(IRelayBus bus, IOptions<IngressOptions> options, IOptions<RelayAuthOptions> auth, IRelayAuthenticator authenticator, NamespacePolicies namespaces, TimeProvider time, IMeterFactory meters, ILogger<IngressNode> logger, IConnectionCounts? connectionCounts = null)
    {
        Refusals = new LimitRefusals(meters);
        AppLimits = new AppLimits(options, time, Refusals, connectionCounts ?? new InMemoryConnectionCounts());
        ArgumentNullException.ThrowIfNull(auth);
        ArgumentNullException.ThrowIfNull(authenticator);
        Authenticator = authenticator;

        // A token is accepted until exp plus the skew, so a connection holding one lives as long.
        TokenGrace = TimeSpan.FromSeconds(auth.Value.ClockSkewSeconds);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(bus);
        if (bus.MayLoseDeliveries)
        {
            _gaps = new GapRepair(DispatchLocal, ReadAfterAsync, LostLocal);
        }

        Metrics = new IngressMetrics(meters, () => _connections.Count, _gaps is null ? null : () => (_gaps.Repaired, _gaps.Unrepaired));
        Bus = bus;
        Namespaces = namespaces;
        Options = options.Value;
        Time = time;
        _logger = logger;
        PresenceLeaves = new PresenceLeaves(bus, time, logger);
        NodeId = string.IsNullOrEmpty(Options.NodeId) ? $"ingress-{Environment.MachineName}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3))}" : Options.NodeId;
    }

    /// <summary>This node's id on the bus.</summary>
    public string NodeId { get; }

    /// <summary>How many client connections (WebSocket and SSE) are open.</summary>
    public int ConnectionCount => _connections.Count;

    /// <summary>How many connections were cut as slow consumers since start.</summary>
    public long SlowConsumerDisconnects => Metrics.SlowConsumers;

    internal IRelayBus Bus { get; }

    internal IngressOptions Options { get; }

    internal NamespacePolicies Namespaces { get; }

    internal TimeSpan TokenGrace { get; }

    internal IRelayAuthenticator Authenticator { get; }

    internal TimeProvider Time { get; }

    internal LocalSubscriptions Subscriptions { get; } = new();

    /// <summary>Presence leaves of closed connections that the bus did not take, sent again until it does.</summary>
    internal PresenceLeaves PresenceLeaves { get; }

    /// <summary>
    /// Deferred flushes of the node's WebSocket connections, so one socket write carries every frame that is ready;
    /// one scheduler per core, so sends to many sockets run on every core.
    /// </summary>
    private readonly FlushScheduler[] _flushers = [.. Enumerable.Range(0, Math.Max(1, Environment.ProcessorCount)).Select(_ => new FlushScheduler())];
    private int _nextFlusher;

    internal FlushScheduler NextFlusher() => _flushers[(int)((uint)Interlocked.Increment(ref _nextFlusher) % (uint)_flushers.Length)];

    internal CancellationToken Stopping => _stopping.Token;

    /// <inheritdoc />
    public ValueTask OnDeliverAsync(RelayMessage message)
    {
        if (_gaps is not null)
        {
            _gaps.Deliver(message);
        }
        else
        {
            DispatchLocal(message);
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask OnResyncAsync() => _gaps is null ? ValueTask.CompletedTask : new ValueTask(_gaps.ResyncAsync(PositionAsync));

    /// <inheritdoc />
    public ValueTask OnResyncAsync(Func<string, string, bool> channels) => _gaps is null ? ValueTask.CompletedTask : new ValueTask(_gaps.ResyncAsync(PositionAsync, channels));

    private async Task<ChannelPosition?> PositionAsync(string app, string channel)
    {
        var reply = await Bus.SendToRoutingAsync(new PositionRequest(app, channel), Stopping).ConfigureAwait(false);
        return reply is PositionReply position ? position.Position : null;
    }

    // A channel's messages from history, or (presence) its presence events from those the engine keeps.
    // The seqs after `position` and before `firstSeen` that history still holds, from the first on without a hole (a
    // failed read: none; the subscription is told they were lost).
    private async Task<List<RelayMessage>> ReadGapAsync(string app, string channel, ChannelPosition position, long firstSeen)
    {
        var gap = new List<RelayMessage>();
        try
        {
            // Page by page (a long gap takes several reads), until the seq before firstSeen or a hole.
            while (position.Seq + gap.Count + 1 < firstSeen)
            {
                var after = position.Seq + gap.Count;
                var read = await ReadAfterAsync(app, channel, presence: false, after, (int)Math.Min(GapRepair.RepairPage, firstSeen - after - 1)).ConfigureAwait(false);
                if (read is not { } history || history.Epoch != position.Epoch)
                {
                    break;
                }

                var before = gap.Count;
                foreach (var message in history.Messages)
                {
                    if (message.Seq != position.Seq + gap.Count + 1 || message.Seq >= firstSeen)
                    {
                        break;
                    }

                    gap.Add(message);
                }

                if (gap.Count == before || gap.Count - before < history.Messages.Count)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Reported lost by the caller.
        }

        return gap;
    }

    /// <summary>Up to <paramref name="limit"/> of a channel's messages (or presence events) after <paramref name="after"/> from history, with its epoch; null: routing did not answer with history.</summary>
    internal async Task<(string Epoch, IReadOnlyList<RelayMessage> Messages)?> ReadAfterAsync(string app, string channel, bool presence, long after, int limit)
    {
        RoutingRequest request = presence ? new PresenceEventsRequest(app, channel, after, limit) : new HistoryRequest(app, channel, limit, AfterSeq: after);
        var reply = await Bus.SendToRoutingAsync(request, Stopping).ConfigureAwait(false);
        return reply is HistoryReply history ? (history.Position.Epoch, history.Messages) : null;
    }

    private void DispatchLocal(RelayMessage message)
    {
        // One span per node, never per subscriber: with ten thousand subscribers a span each would be the load.
        using var activity = RelayTracing.Start(RelayTracing.IngressDeliver, ActivityKind.Producer, message.TraceParent, message.Channel);
        _recent?.Add(message);
        var subscribers = Subscriptions.Dispatch(message);
        activity?.SetTag("relay.subscribers", subscribers);
        Metrics.Dispatched(subscribers, message.Timestamp, Time.GetUtcNow().ToUnixTimeMilliseconds());
    }

    // Messages of a channel never reached this node and history no longer holds them: every local subscription that
    // had not passed them makes its client recover (it learns recovered: false), before the next message goes out.
    // Presence events have no loss signal in the protocol: the log says so, and `get` still lists the members as they are.
    private void LostLocal(string app, string channel, string epoch, long upTo, bool presence)
    {
        if (presence)
        {
            LogPresenceEventsLost(_logger, app, channel, epoch, upTo);
            return;
        }

        var told = Subscriptions.ForEach(app, channel, subscription => subscription.Lost(epoch, upTo));
        LogMessagesLost(_logger, app, channel, epoch, upTo, told);
    }

    internal void CountSlowConsumer() => Metrics.SlowConsumer();

    internal IngressMetrics Metrics { get; }

    /// <summary>The per-app limits: connections, publishes a second and subscriptions of each app on this node.</summary>
    internal AppLimits AppLimits { get; }

    /// <summary>The count of refusals by per-IP and per-app limits (the connection gate's too).</summary>
    internal LimitRefusals Refusals { get; }

    internal void Register(INodeConnection connection) => _connections[connection.ConnectionId] = connection;

    internal void Unregister(INodeConnection connection) =>
        _connections.TryRemove(new KeyValuePair<string, INodeConnection>(connection.ConnectionId, connection));

    /// <summary>
    /// Keeps the last messages this node dispatched from now on (<see cref="RecentDispatches"/>), so a subscription
    /// given its request's arrival time gets those dispatched after it arrived (the MQTT listener's, on its first
    /// connection). Idempotent.
    /// </summary>
    internal void KeepRecentDispatches()
    {
        if (Volatile.Read(ref _recent) is null)
        {
            Interlocked.CompareExchange(ref _recent, new RecentDispatches(), null);
        }
    }

    /// <summary>
    /// The messages of <paramref name="channel"/> (a pattern's channels with <paramref name="isPattern"/>) this node
    /// dispatched after <paramref name="afterTicks"/> that it still keeps; null when none or none are kept.
    /// </summary>
    internal List<RelayMessage>? DispatchedAfter(string app, string channel, bool isPattern, long afterTicks) =>
        Volatile.Read(ref _recent)?.After(app, channel, isPattern, afterTicks);

    internal ValueTask AddSubscriptionAsync(Subscription subscription)
    {
        lock (InterestGate(subscription))
        {
            var count = Subscriptions.Add(subscription);
            return Bus.SendInterestAsync(new InterestChange(NodeId, subscription.App, subscription.Channel, count));
        }
    }

    // A change's new count and its hand-over to the bus happen under one gate per channel (striped): fan-out takes
    // counts as absolute, so two changes computed as 1 then 0 must never reach it as 0 then 1 (it would stop
    // delivering to a node that has a subscriber). The buses take the change in call order before their first wait.
    private Lock InterestGate(Subscription subscription) =>
        _interestGates[(int)((uint)HashCode.Combine(subscription.App, subscription.Channel) % (uint)_interestGates.Length)];

    /// <summary>
    /// Subscribes <paramref name="sink"/> with no gap and no duplicate: the subscription buffers live messages
    /// while routing is asked for the position (or for history after <c>since</c>, or the last <c>rewind</c>
    /// messages); then <paramref name="ready"/> runs, the missed messages follow, and buffered live ones after them.
    /// <paramref name="fromRegistration"/> (a protocol that tells subscribers no seq: MQTT): without <c>since</c> or
    /// <c>rewind</c>, every message that reached this node after the subscription was added follows, not only those
    /// after the position routing answered, so a publish that arrives after the SUBSCRIBE was taken is delivered
    /// (as a broker that subscribes in one step does), not lost to the round trip. With <paramref name="arrivedTicks"/>
    /// as well (when the request reached the host, UTC ticks; 0: unknown), so are the messages this node dispatched after
    /// that, before the subscription was added (read on another thread first: <see cref="RecentDispatches"/>).
    /// <paramref name="takeWhatHistoryHolds"/> (a resumed MQTT session, which has no way to hear of a gap): when history no
    /// longer holds everything after <c>since</c>, the messages it still holds of the epoch follow anyway, and
    /// <paramref name="ready"/> gets the seq before the first of them, not recovered; otherwise only live ones follow.
    /// </summary>
    internal async ValueTask<Subscription> StartSubscriptionAsync(IMessageSink sink, string app, string channel, string? sinceEpoch, long? sinceSeq, int? rewind, SubscriptionReady ready, bool fromRegistration = false, long arrivedTicks = 0, bool takeWhatHistoryHolds = false)
    {
        var isPattern = ChannelName.IsPattern(channel);
        var policy = Namespaces.For(channel);
        if (!isPattern && Subscriptions.CountOf(app, channel) >= policy.MaxSubscribers)
        {
            throw new RelayException(ErrorCodes.RateLimited, $"channel '{channel}' has its maximum of {policy.MaxSubscribers} subscribers on this node");
        }

        if (AppLimits.TrySubscribe(app) is { } overLimit)
        {
            throw new RelayException(overLimit);
        }

        // Given what went out after its request arrived: a pattern then holds what comes until it has those.
        var looksBack = arrivedTicks != 0 && fromRegistration && sinceSeq is null && rewind is null && Volatile.Read(ref _recent) is not null;
        var subscription = new Subscription(sink, app, channel, isPattern, heldUntilLive: isPattern && looksBack);
        if (AppLimits.CountsSubscriptions(app))
        {
            subscription.CountForApp();
        }

        await AddSubscriptionAsync(subscription).ConfigureAwait(false);
        var earlier = looksBack ? DispatchedAfter(app, channel, isPattern, arrivedTicks) : null;
        if (earlier is not null && !isPattern)
        {
            subscription.TakeEarlier(earlier);
        }

        if (isPattern)
        {
            subscription.GoLive(earlier);
            ready(channel, null, false);
            return subscription;
        }

        var recover = sinceSeq is not null && policy.Recovery;
        RoutingRequest read = recover ? new HistoryRequest(app, channel, int.MaxValue, AfterSeq: sinceSeq)
            : rewind is { } count ? new HistoryRequest(app, channel, Math.Min(count, MaxRewind))
            : new PositionRequest(app, channel);
        RoutingReply reply;
        try
        {
            reply = await Bus.SendToRoutingAsync(read, Stopping).ConfigureAwait(false);
            if (reply is ErrorReply error)
            {
                throw new RelayException(error.Error);
            }
        }
        catch
        {
            await RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
            throw;
        }

        var (position, missed, recovered) = reply switch
        {
            HistoryReply history when recover && history.Complete && history.Position.Epoch == sinceEpoch => (history.Position, history.Messages, true),
            HistoryReply history when recover && takeWhatHistoryHolds && history.Position.Epoch == sinceEpoch => (history.Position, history.Messages, false),
            HistoryReply history when recover => (history.Position, (IReadOnlyList<RelayMessage>)[], false),
            HistoryReply history => (history.Position, history.Messages, false),
            PositionReply positionReply => (positionReply.Position, (IReadOnlyList<RelayMessage>)[], false),
            _ => throw new InvalidOperationException($"unexpected routing reply {reply.GetType().Name}"),
        };

        // The first subscriber of a channel on this node: deliveries that came before the position, past a gap the node
        // never saw, are in this subscription's buffer; the gap between is read from history now and sent first (what
        // history no longer holds is reported lost), so the subscriber sees no jump.
        var sentUpTo = position.Seq;
        if (_gaps?.Start(app, channel, position) is { } firstSeen)
        {
            var gap = await ReadGapAsync(app, channel, position, firstSeen).ConfigureAwait(false);
            if (gap.Count > 0)
            {
                missed = [.. missed, .. gap];
                sentUpTo = gap[^1].Seq;
            }

            if (sentUpTo < firstSeen - 1)
            {
                subscription.Lost(position.Epoch, firstSeen - 1);
            }
        }

        var keepsFromRegistration = fromRegistration && !recover && rewind is null && missed.Count == 0;
        var partly = recover && !recovered && missed.Count > 0;
        subscription.GoLive(position.Epoch, sentUpTo, start =>
        {
            // A protocol that tells no seq starts where its first message follows (MQTT's session records it as given),
            // not at routing's position: buffered messages at or below it follow. What history partly held starts
            // before its first message.
            ready(channel, keepsFromRegistration ? position with { Seq = start } : partly ? position with { Seq = missed[0].Seq - 1 } : position, recovered);
            foreach (var message in missed)
            {
                sink.Send(message);
            }
        }, keepsFromRegistration);
        return subscription;
    }

    internal ValueTask RemoveSubscriptionAsync(Subscription subscription)
    {
        if (subscription.UncountForApp())
        {
            AppLimits.Unsubscribed(subscription.App);
        }

        lock (InterestGate(subscription))
        {
            var count = Subscriptions.Remove(subscription);
            return Bus.SendInterestAsync(new InterestChange(NodeId, subscription.App, subscription.Channel, count));
        }
    }

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _registration = Bus.ServeNode(NodeId, this);
        _sweep = SweepAsync(_stopping.Token);
        _leaves = PresenceLeaves.RunAsync(_stopping.Token);
        LogStarted(_logger, NodeId, Connections.SocketCompletions.Inline ? "inline" : "on the thread pool", Connections.SocketCompletions.EventThreads);
        if (AppLimits.AnyClusterLimit)
        {
            LogClusterLimits(_logger, AppLimits.ClusterScope, AppLimits.WhenCountsDown == ClusterCountsDown.Admit ? "admitted (the per-node MaxConnections still holds)" : "refused with 42900");
        }

        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var connection in _connections.Values)
        {
            connection.Abort();
        }

        if (_sweep is not null)
        {
            await _sweep.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        if (_leaves is not null)
        {
            await _leaves.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        _registration?.Dispose();
    }

    /// <inheritdoc />
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// The drain runs before any hosted service stops: the web server stops first (it is registered last) and would
    /// otherwise wait out its shutdown timeout on the open WebSockets before this node could tell them to go.
    /// </summary>
    public Task StoppingAsync(CancellationToken cancellationToken) => DrainAsync(cancellationToken);

    /// <inheritdoc />
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public void Dispose() => _stopping.Dispose();

    // Tells every connection to go (disconnect 50300, reconnect: true) and waits, within DrainTimeout, until they have;
    // the node keeps serving meanwhile (a connection still flushes its queue, the deadline loop still aborts one that
    // does not close within CloseTimeout). What is left is aborted by StopAsync.
    private async Task DrainAsync(CancellationToken cancellationToken)
    {
        if (Options.DrainTimeout <= TimeSpan.Zero || _connections.IsEmpty)
        {
            return;
        }

        LogDraining(_logger, NodeId, _connections.Count, Options.DrainTimeout.TotalSeconds);
        var draining = new RelayError(ErrorCodes.Unavailable, "node draining: reconnect (another node takes the connection) and resume with 'since'");
        foreach (var connection in _connections.Values)
        {
            connection.Drain(draining);
        }

        var deadline = Time.GetTimestamp() + (long)(Options.DrainTimeout.TotalSeconds * Time.TimestampFrequency);
        try
        {
            while (!_connections.IsEmpty && Time.GetTimestamp() < deadline)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), Time, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The host's shutdown timeout ran out first: the rest are aborted.
        }

        LogDrained(_logger, NodeId, _connections.Count);
    }

    private int _checking;

    private async Task CheckQuietChannelsAsync(GapRepair gaps)
    {
        try
        {
            await gaps.CheckQuietAsync(PositionAsync, Options.QuietCheckAfter, (app, channel, presence, had, position) =>
            {
                Metrics.QuietCatchUp();
                LogFoundBehind(_logger, channel, app, presence ? "presence events" : "messages", had, position);
            }).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Each channel's failure is kept on its cursor (asked again next time); this is only the unexpected.
            LogQuietCheckFailed(_logger, e);
        }
        finally
        {
            Volatile.Write(ref _checking, 0);
        }
    }

    private async Task SweepAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), Time);
        try
        {
            var ticks = 0;
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                if (++ticks % 60 == 0)
                {
                    _gaps?.Sweep(TimeSpan.FromMinutes(1), (app, channel) => Subscriptions.CountOf(app, channel) > 0);
                }

                // One quiet check at a time: a slow routing reply must not pile checks up behind it.
                if (_gaps is not null && Options.QuietCheckAfter > TimeSpan.Zero && Interlocked.CompareExchange(ref _checking, 1, 0) == 0)
                {
                    _ = CheckQuietChannelsAsync(_gaps);
                }

                var now = Time.GetUtcNow();
                var keysVersion = Authenticator.KeysVersion;
                foreach (var connection in _connections.Values)
                {
                    connection.CheckDeadlines(now);

                    // One comparison per connection unless the keys changed (a config reload, or what the auth service published).
                    connection.CheckCredentials(keysVersion);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    [LoggerMessage(EventId = 1000, Level = LogLevel.Information, Message = "Ingress node {NodeId} serving; socket completions run {Completions} ({EventThreads} socket event threads; Relay:Ingress:InlineSocketCompletions)")]
    private static partial void LogStarted(ILogger logger, string nodeId, string completions, int eventThreads);

    [LoggerMessage(EventId = 1007, Level = LogLevel.Information, Message = "App connection limits across the cluster (Relay:Ingress:AppLimits, MaxClusterConnections) are counted {Scope}; while those counts cannot be reached, connections are {WhenDown} (Relay:Ingress:AppLimits:ClusterCountsDown)")]
    private static partial void LogClusterLimits(ILogger logger, string scope, string whenDown);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Warning, Message = "Messages of channel {Channel} (app {App}, epoch {Epoch}) up to seq {UpTo} never reached this node and history no longer holds them; {Subscriptions} local subscriptions checked, those behind it told to recover")]
    private static partial void LogMessagesLost(ILogger logger, string app, string channel, string epoch, long upTo, int subscriptions);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Warning, Message = "Channel {Channel} (app {App}) was quiet at this node at {What} number {Had} while it stood at {Position}: deliveries lost with nothing after them to show it, read back now (Relay:Ingress:QuietCheckAfter)")]
    private static partial void LogFoundBehind(ILogger logger, string channel, string app, string what, long had, long position);

    [LoggerMessage(EventId = 1006, Level = LogLevel.Error, Message = "The quiet-channel check failed; it runs again within a second")]
    private static partial void LogQuietCheckFailed(ILogger logger, Exception error);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Information, Message = "Ingress node {NodeId} draining: {Connections} connections told to reconnect elsewhere; waiting up to {Seconds} s (Relay:Ingress:DrainTimeout)")]
    private static partial void LogDraining(ILogger logger, string nodeId, int connections, double seconds);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Information, Message = "Ingress node {NodeId} drained; {Left} connections left to abort")]
    private static partial void LogDrained(ILogger logger, string nodeId, int left);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "Presence events of channel {Channel} (app {App}, epoch {Epoch}) up to number {UpTo} never reached this node and the engine no longer keeps them; subscribers see the members as they are on their next presence get")]
    private static partial void LogPresenceEventsLost(ILogger logger, string app, string channel, string epoch, long upTo);
}
