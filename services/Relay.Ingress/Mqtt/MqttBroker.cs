using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Relay.Bus.Claims;
using Relay.Bus.Retained;
using Relay.Bus.Sessions;
using Relay.Bus.Shares;
using Relay.Core.Messages;
using Relay.Ingress.Mqtt.Codec;
using Relay.Ingress.Subscriptions;
using Microsoft.Extensions.Options;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// What every MQTT connection of the node shares: the node, the options, the client ids in use and their sessions, per
/// app, so a second connection with a client id takes over from the first (MQTT 3.1.1 §3.1.4, 5.0 §3.1.4) and a
/// persistent session is resumed by the next connection with its client id, on this node or, through the bus's session
/// store, on another (docs/mqtt.md, "Sessions across nodes").
/// </summary>
internal sealed partial class MqttBroker : IDisposable
{
    private readonly ConcurrentDictionary<(string App, string ClientId), MqttConnection> _clients = new();
    private readonly ConcurrentDictionary<(string App, string ClientId), MqttSession> _sessions = new();

    /// <summary>Whether a connection holds the session of <paramref name="clientId"/> (tests wait for a client to be away).</summary>
    internal bool SessionAttached(string app, string clientId) => _sessions.TryGetValue((app, clientId), out var session) && session.Attached;

    /// <summary>The session of <paramref name="clientId"/> on this node, if any (tests take snapshots of it).</summary>
    internal MqttSession? SessionOf(string app, string clientId) => _sessions.GetValueOrDefault((app, clientId));

    /// <summary>How often a node asks the store again while another node still holds a session it takes over.</summary>
    private static readonly TimeSpan HandOffPoll = TimeSpan.FromMilliseconds(20);

    /// <summary>
    /// Beyond <c>Relay:Ingress:CloseTimeout</c> (the longest the old node's connection takes to close and hand its session
    /// back), what the old node is given to write the session before another takes it as last written (a dead node).
    /// </summary>
    private static readonly TimeSpan HandOffSlack = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Added to a held session's expiry for its store entry's time to live, rewritten at half of it while a connection
    /// holds the session: a connected client's session never expires in the store, and one whose node died goes in time.
    /// </summary>
    private static readonly TimeSpan HeldSlack = TimeSpan.FromMinutes(2);

    /// <summary>How long a clean start's empty entry outlives it, so a late write of the session it discarded cannot bring it back.</summary>
    private static readonly TimeSpan DiscardedKept = TimeSpan.FromMinutes(1);

    private readonly ITimer _expiry;
    private readonly IDisposable _claimsWatch;
    private readonly IDisposable _willsWatch;

    // Shared subscriptions' groups on this node, per app, group name and filter; joined and left one at a time.
    private readonly Dictionary<(string App, string Group, string Filter), MqttShareGroup> _shares = [];
    private readonly SemaphoreSlim _sharesGate = new(1, 1);

    // The payloads of retained publishes this node took, for MQTT 5 Retain As Published: a message routed here carries
    // the very array the publish gave (the bus carries no retain flag). Weak: an entry lives as long as its payload.
    private readonly ConditionalWeakTable<byte[], object> _retainedPayloads = [];

    // Sweeps (seconds) so far, for the periodic write of positions (MqttOptions.PositionWriteSeconds); the timer's only.
    private long _sweeps;

    public MqttBroker(IngressNode node, IOptions<MqttOptions> options, Relay.Auth.Verification.IRelayKeys keys, IRetainedStore retained, IClientClaims claims, ISessionStore store, IWillStore wills, IShareClaims shares, ILogger<MqttConnection> logger)
    {
        Store = store;
        Wills = wills;
        Node = node;
        Keys = keys;
        Options = options.Value;
        Logger = logger;
        Retained = retained;
        Claims = claims;
        Shares = shares;
        _claimsWatch = claims.Watch(ClaimedElsewhere);

        // Over Redis: this node beats, and publishes the wills of nodes that stopped beating (docs/mqtt.md, "Guarantees under failure").
        _willsWatch = wills.WatchOrphans(PublishOrphanWillAsync);

        // Once a second, as the node's own loop: sessions left unresumed past their expiry end.
        _expiry = node.Time.CreateTimer(static state => ((MqttBroker)state!).ExpireSessions(), this, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    public IngressNode Node { get; }

    /// <summary>The keys by name, for a client certificate mapped to one.</summary>
    public Relay.Auth.Verification.IRelayKeys Keys { get; }

    public MqttOptions Options { get; }

    public ILogger<MqttConnection> Logger { get; }

    /// <summary>The retained messages: the bus's store (in Redis over the Redis and Dapr buses, shared by every node: docs/mqtt.md).</summary>
    public IRetainedStore Retained { get; }

    /// <summary>Client-id claims across nodes (over Redis and Dapr: a connection elsewhere with the id takes over from one here).</summary>
    public IClientClaims Claims { get; }

    /// <summary>Persistent sessions between nodes: the bus's store (in Redis over the Redis and Dapr buses: docs/mqtt.md).</summary>
    public ISessionStore Store { get; }

    /// <summary>The connections' last wills across nodes (over Redis and Dapr: another node publishes those of a node that died).</summary>
    public IWillStore Wills { get; }

    /// <summary>Which node delivers each message of a shared subscription's group (over Redis and Dapr: one node per message across them).</summary>
    public IShareClaims Shares { get; }

    /// <summary>Notes that <paramref name="payload"/> is a retained publish's, before it is routed (for Retain As Published).</summary>
    public void MarkRetained(ReadOnlyMemory<byte> payload)
    {
        // Never the one shared empty array (every empty payload's): only an array of this publish's own.
        if (MemoryMarshal.TryGetArray(payload, out var segment) && segment.Array is { } array && !ReferenceEquals(array, Array.Empty<byte>()))
        {
            _retainedPayloads.AddOrUpdate(array, this);
        }
    }

    /// <summary>Whether <paramref name="message"/> came from a retained publish this node took (docs/mqtt.md: Retain As Published).</summary>
    public bool PublishedRetained(RelayMessage message) =>
        MemoryMarshal.TryGetArray(message.Data, out var segment) && segment.Array is { } array && _retainedPayloads.TryGetValue(array, out _);

    /// <summary>Adds <paramref name="member"/> to its group on this node; the group's one node subscription starts with its first member.</summary>
    public async Task JoinShareAsync(MqttSubscriptionSink member, string group, string filter)
    {
        await _sharesGate.WaitAsync(Node.Stopping).ConfigureAwait(false);
        try
        {
            var key = (member.Session.App, group, filter);
            if (!_shares.TryGetValue(key, out var share))
            {
                share = new MqttShareGroup(this, member.Session.App, group, filter);
                share.Subscription = await Node.StartSubscriptionAsync(share, share.App, filter, null, null, null, static (_, _, _) => { }, fromRegistration: true).ConfigureAwait(false);
                share.Start();
                _shares[key] = share;
            }

            member.JoinedShare = share;
            share.Add(member);
        }
        finally
        {
            _sharesGate.Release();
        }
    }

    /// <summary>Ends a subscription: a shared member leaves its group (the last one ends the group's node subscription), any other leaves the node's index.</summary>
    public async ValueTask RemoveAsync(MqttSubscriptionSink sink)
    {
        if (sink.Identifier != 0)
        {
            sink.Session.Identified?.Remove(sink.TopicFilter, sink);
        }

        if (sink.JoinedShare is not { } share)
        {
            if (sink.Subscription is { } subscription)
            {
                await Node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
            }

            return;
        }

        await _sharesGate.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            share.Remove(sink);
            if (share.Count == 0 && _shares.Remove((share.App, share.Name, share.Filter)))
            {
                // Out of the group across nodes first, so no node picks this one for a message it can no longer deliver.
                await share.StopAsync().ConfigureAwait(false);
                if (share.Subscription is { } subscription)
                {
                    await Node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            _sharesGate.Release();
        }
    }

    /// <summary>Records <paramref name="connection"/> as its client id's; the connection it replaces, if any, is returned to be closed.</summary>
    public MqttConnection? Claim(string app, string clientId, MqttConnection connection)
    {
        MqttConnection? previous = null;
        _clients.AddOrUpdate((app, clientId), connection, (_, existing) =>
        {
            previous = existing;
            return connection;
        });
        return ReferenceEquals(previous, connection) ? null : previous;
    }

    /// <summary>Forgets <paramref name="connection"/> as its client id's, unless another has taken the id since.</summary>
    public void Release(string app, string clientId, MqttConnection connection) =>
        _clients.TryRemove(new KeyValuePair<(string, string), MqttConnection>((app, clientId), connection));

    /// <summary>
    /// The session for a new connection of <paramref name="clientId"/>: the existing one, once the connection it had has
    /// handed it back, unless <paramref name="cleanStart"/> asks for a new one or it cannot be resumed (it expired, or
    /// messages for it were lost while away); without one here, the one another node held, from the bus's session store
    /// (Restore: to subscribe again and recover from history); otherwise a new one. Present: whether one was resumed.
    /// <paramref name="claim"/> is the connection's claim of the client id (0: it could not be made).
    /// </summary>
    public async Task<(MqttSession Session, bool Present, MqttStoredSession? Restore)> OpenSessionAsync(string app, string clientId, bool cleanStart, uint expirySeconds, Task<long> claim)
    {
        var key = (app, clientId);
        if (_sessions.TryGetValue(key, out var existing))
        {
            // The connection that held it was told to close (takeover): what it did not deliver comes back first.
            try
            {
                await existing.WhenReleased.WaitAsync(Node.Options.CloseTimeout).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // The node aborts a connection that does not close within CloseTimeout; what it still held is lost.
            }

            if (cleanStart || existing.Discarded || existing.ExpirySeconds == 0 || existing.LostWhileAway || Node.Time.GetUtcNow().UtcTicks >= existing.ExpiresAtTicks)
            {
                if (existing.LostWhileAway)
                {
                    LogSessionLost(Logger, app, clientId);
                }

                await DiscardAsync(existing).ConfigureAwait(false);
                existing = null;
            }
        }

        var number = await claim.ConfigureAwait(false);
        MqttStoredSession? restore = null;
        var stored = false;
        if (existing is { DroppedWhileAway: true })
        {
            await RefillAsync(existing).ConfigureAwait(false);
        }

        if (existing is null && number != 0)
        {
            (restore, stored) = await TakeStoredAsync(app, clientId, number, cleanStart, expirySeconds).ConfigureAwait(false);
        }

        var session = existing ?? new MqttSession(this, app, clientId) { Stored = stored };
        if (restore?.Releases is { Count: > 0 } releases)
        {
            session.KeepReleases(releases);
        }

        if (restore?.AwaitingRelease is { Count: > 0 } awaitingRelease)
        {
            session.KeepAwaitingRelease(awaitingRelease);
        }

        if (restore?.Resends is { Count: > 0 } resends)
        {
            session.KeepResends(resends);
        }

        session.ExpirySeconds = expirySeconds;
        if (number != 0)
        {
            session.Claim = number;
        }

        session.RefreshDueTicks = Node.Time.GetUtcNow().UtcTicks + (HeldTtl(session).Ticks / 2);
        _sessions[key] = session;
        if (existing is null && restore is null && stored && expirySeconds > 0)
        {
            // The take left the entry without state: written now, so a node resuming the session after this one died
            // says it is present (a publisher never subscribes, and nothing else would write it before it ends).
            _ = SaveAsync(session, held: true);
        }

        return (session, existing is not null || restore is not null, restore);
    }

    /// <summary>
    /// Reads back from history what <paramref name="session"/>'s queue dropped while its client was away (the bound is
    /// Relay:Mqtt:MaxQueuedMessages and MaxQueuedBytes, history's the channel's), so the connection resuming it gets
    /// each channel's messages with no gap where history still holds them; what it no longer holds stays lost (logged
    /// as dropped). Paged as gap repair reads; at most half of Relay:Ingress:SendQueueBytes in all (the newest of each
    /// range): the connection's send budget holds everything resumed, and more would cut the client as a slow consumer
    /// at once. The queue keeps everything meanwhile.
    /// </summary>
    private async Task RefillAsync(MqttSession session)
    {
        var budget = Node.Options.SendQueueBytes / 2;
        var refill = new List<MqttOutbound>();
        var bytes = 0L;
        var wanted = 0L;
        foreach (var (channel, range) in session.TakeDropped())
        {
            wanted += range.Last - range.First + 1;
            var newest = new Queue<MqttOutbound>();
            try
            {
                for (var after = range.First - 1; after < range.Last;)
                {
                    var read = await Node.ReadAfterAsync(session.App, channel, presence: false, after, (int)Math.Min(GapRepair.RepairPage, range.Last - after)).ConfigureAwait(false);
                    if (read is not { } history || !string.Equals(history.Epoch, range.Epoch, StringComparison.Ordinal) || history.Messages.Count == 0)
                    {
                        break;
                    }

                    foreach (var message in history.Messages)
                    {
                        if (message.Seq > after && message.Seq <= range.Last)
                        {
                            var item = new MqttOutbound(message, null, MessageProperties.DeliveryQos(message.Properties, range.Qos));
                            newest.Enqueue(item);
                            bytes += MqttOutbound.Size(item);
                            while (bytes > budget && newest.TryDequeue(out var oldest))
                            {
                                bytes -= MqttOutbound.Size(oldest);
                            }
                        }
                    }

                    after = Math.Max(after + 1, history.Messages[^1].Seq);
                }
            }
            catch (Exception ex) when (ex is not OutOfMemoryException and not OperationCanceledException)
            {
                LogRefillFailed(Logger, ex, session.App, session.ClientId, channel);
            }

            refill.AddRange(newest);
        }

        session.Refill(refill);
        LogRefilled(Logger, session.App, session.ClientId, refill.Count, wanted);
    }

    /// <summary>
    /// Takes the client id's session from the store for <paramref name="claim"/>: with a clean start its stored state is
    /// dropped; otherwise, while a node holding it for an earlier claim has not written it back (its connection is still
    /// closing), asked again until <c>Relay:Ingress:CloseTimeout</c> and a second have passed, then taken as last written.
    /// Stored: whether the store now has an entry of this session's.
    /// </summary>
    private async Task<(MqttStoredSession? Restore, bool Stored)> TakeStoredAsync(string app, string clientId, long claim, bool cleanStart, uint expirySeconds)
    {
        var hold = !cleanStart || expirySeconds > 0;
        var ttl = hold ? TimeSpan.FromSeconds(expirySeconds) + HeldSlack : DiscardedKept;
        try
        {
            if (cleanStart)
            {
                var discarding = Store.TakeAsync(ClaimScope, app, clientId, claim, discard: true, force: true, hold, ttl, Node.Stopping);
                if (!hold)
                {
                    // A clean session waits for nothing: the old state just goes.
                    _ = ForgetStoredAsync(discarding, app, clientId);
                    return (null, false);
                }

                return (null, (await discarding.ConfigureAwait(false)).Outcome == SessionTakeOutcome.Taken);
            }

            var deadline = Node.Time.GetUtcNow() + Node.Options.CloseTimeout + HandOffSlack;
            while (true)
            {
                var force = Node.Time.GetUtcNow() >= deadline;
                var take = await Store.TakeAsync(ClaimScope, app, clientId, claim, discard: false, force, hold: true, ttl, Node.Stopping).ConfigureAwait(false);
                switch (take.Outcome)
                {
                    case SessionTakeOutcome.Held:
                        await Task.Delay(HandOffPoll, Node.Time, Node.Stopping).ConfigureAwait(false);
                        continue;
                    case SessionTakeOutcome.Later:
                        // A connection that claimed the id after this one has the session: this one is being taken over.
                        return (null, false);
                }

                var restore = MqttStoredSession.Decode(take.State);
                if (restore is not null)
                {
                    if (force)
                    {
                        LogHandOffLate(Logger, app, clientId, (Node.Options.CloseTimeout + HandOffSlack).TotalSeconds);
                    }

                    LogSessionTaken(Logger, app, clientId, restore.Subscriptions.Count, restore.Positions.Count);
                }

                return (restore, true);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException and not OperationCanceledException)
        {
            LogStoreFailed(Logger, ex, app, clientId);
            return (null, false);
        }
    }

    private async Task ForgetStoredAsync(ValueTask<SessionTake> discarding, string app, string clientId)
    {
        try
        {
            await discarding.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogStoreFailed(Logger, ex, app, clientId);
        }
    }

    /// <summary>
    /// Writes <paramref name="session"/> to the store for the next node: <paramref name="held"/> while this node keeps it
    /// (a connection holds it, or it waits here for its client), false when handing it over. Nothing for a clean session,
    /// or one whose claim could not be made. False when not written: nothing to write, a later claim wrote first (a clean
    /// start elsewhere discarded it, or a node took it without waiting), or the store did not answer.
    /// </summary>
    public async Task<bool> SaveAsync(MqttSession session, bool held)
    {
        if (session.ExpirySeconds == 0 || session.Claim == 0 || session.LostWhileAway)
        {
            return false;
        }

        var (state, version) = session.Snapshot();
        var ttl = session.Attached ? HeldTtl(session) : TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerSecond, session.ExpiresAtTicks == long.MaxValue ? TimeSpan.TicksPerSecond * session.ExpirySeconds : session.ExpiresAtTicks - Node.Time.GetUtcNow().UtcTicks));
        try
        {
            if (await Store.SaveAsync(ClaimScope, session.App, session.ClientId, session.Claim, version, held, state.Encode(), ttl, Node.Stopping).ConfigureAwait(false))
            {
                session.Stored = true;
                return true;
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException and not OperationCanceledException)
        {
            LogStoreFailed(Logger, ex, session.App, session.ClientId);
        }

        return false;
    }

    /// <summary>
    /// Whether the client's QoS 2 publishes on <paramref name="session"/> get a receipt in the session store before their
    /// PUBREC (a persistent session over a store that outlives the process: the Redis and Dapr buses). The receipt holds
    /// the idempotency id the publish is routed with, so a resend on any node after this one died is routed with the same
    /// id and routing drops it (docs/mqtt.md, "Guarantees under failure").
    /// </summary>
    public bool DurableReceipts(MqttSession? session) => Store.Durable && session is { ExpirySeconds: > 0, Claim: not 0 };

    /// <summary>The receipt of the client's QoS 2 publish <paramref name="packetId"/>: the idempotency id to route it with (a resend's: the first copy's).</summary>
    public ValueTask<string> ReceiveAsync(MqttSession session, ushort packetId) =>
        Store.ReceiveAsync(ClaimScope, session.App, session.ClientId, session.Claim, packetId, "mqtt:" + Guid.NewGuid().ToString("N"), HeldTtl(session), Node.Stopping);

    /// <summary>Drops the receipt of <paramref name="packetId"/> (PUBREL); whether there was one.</summary>
    public ValueTask<bool> ReleaseAsync(MqttSession session, ushort packetId) =>
        Store.ReleaseAsync(ClaimScope, session.App, session.ClientId, packetId, Node.Stopping);

    // A held session's entry lives its expiry and the slack, rewritten at half of that while a connection holds it.
    private static TimeSpan HeldTtl(MqttSession session) => TimeSpan.FromSeconds(session.ExpirySeconds) + HeldSlack;

    /// <summary>
    /// Ends a session: its subscriptions leave the node's index, and what it kept is dropped; a delayed will goes now.
    /// Unless it was handed over (<paramref name="handedOver"/>: another node resumes it), its store entry goes too.
    /// </summary>
    public async Task DiscardAsync(MqttSession session, bool handedOver = false)
    {
        session.Discarded = true;
        if (handedOver)
        {
            // MQTT 5 §3.1.3.2.2: the client connected to the session again (elsewhere) before the will's delay passed.
            session.TakeWill(long.MaxValue);
        }
        else if (session.TakeWill(long.MaxValue) is { } will)
        {
            await PublishWillAsync(will).ConfigureAwait(false);
        }

        if (!handedOver && session.Stored && session.Claim != 0)
        {
            session.Stored = false;
            try
            {
                await Store.DeleteAsync(ClaimScope, session.App, session.ClientId, session.Claim, Node.Stopping).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException and not OperationCanceledException)
            {
                LogStoreFailed(Logger, ex, session.App, session.ClientId);
            }
        }

        _sessions.TryRemove(new KeyValuePair<(string, string), MqttSession>((session.App, session.ClientId), session));
        MqttSubscriptionSink[] all;
        lock (session.Subscriptions)
        {
            all = session.Subscriptions.Sinks();
            session.Subscriptions.Clear();
        }

        foreach (var sink in all)
        {
            await RemoveAsync(sink).ConfigureAwait(false);
        }
    }

    /// <summary>A session away longer than its queue holds dropped its oldest message (logged).</summary>
    public void QueuedMessageDropped(MqttSession session, string? channel)
    {
        LogQueuedDropped(Logger, session.App, session.ClientId, channel, Options.MaxQueuedMessages, Options.MaxQueuedBytes);
    }

    /// <summary>Publishes a last will (and keeps it as its topic's retained message when it asked to be retained).</summary>
    public async Task PublishWillAsync(MqttWill will)
    {
        var request = will.Request;
        if (will.Retain)
        {
            MarkRetained(request.Items[0].Data);
        }

        try
        {
            var reply = await Node.Bus.SendToRoutingAsync(request, CancellationToken.None).ConfigureAwait(false);
            if (will.Retain && reply is Relay.Bus.Routing.PublishReply published)
            {
                var item = request.Items[0];
                await RetainAsync(new RelayMessage { App = request.App, Channel = request.Channel, Epoch = published.Epoch, Seq = published.Seqs[0], Data = item.Data, DataIsJson = item.DataIsJson, Properties = item.Properties }).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogWillFailed(Logger, ex, request.App, request.Channel);
        }
    }

    /// <summary>
    /// The will of a connection as it is published, by its node or (<see cref="PublishOrphanWillAsync"/>) by another:
    /// checked against the connection's capabilities by the caller.
    /// </summary>
    public MqttWill WillOf(MqttConnect will, string app, string? clientId, bool v5)
    {
        var data = will.WillPayload ?? [];
        var properties = MqttMessageProperties.From(v5 ? will.WillProperties : null, Node.Time.GetUtcNow().ToUnixTimeMilliseconds(), will.WillQos);
        var request = new Relay.Bus.Routing.PublishRequest(app, will.WillTopic!, [new PublishItem(null, data, JsonPayload.IsOneValue(data), null) { Properties = properties }], clientId, null);
        return new MqttWill(request, will.WillRetain && Options.MaxRetainedPerApp > 0);
    }

    /// <summary>
    /// Records a new connection's will in the will store, replacing what an earlier connection of its client id left
    /// there on any node; null where the store keeps nothing (the in-memory bus). Kept for another node: a will the
    /// connection may publish, with its MQTT 5 Will Delay (the lower of it and the session's expiry), published that long
    /// after this node's death unless the client connects again first; otherwise the entry is an empty one. Once the
    /// connection ends here, its delayed will is this node's only (docs/mqtt.md, "Guarantees under failure").
    /// </summary>
    public Task<string?>? RegisterWill(string app, string clientId, MqttConnect? will, Relay.Auth.Verification.RelayPrincipal principal, bool v5, uint expirySeconds)
    {
        if (!Wills.Durable)
        {
            return null;
        }

        var bytes = ReadOnlyMemory<byte>.Empty;
        var delay = v5 ? Math.Min(will?.WillProperties?.WillDelayInterval ?? 0, expirySeconds) : 0;
        if (will is { WillTopic: { } topic } && principal.Capabilities.Allows(topic, Relay.Core.Auth.Operations.Publish) && Node.Namespaces.For(topic).ClientPublish)
        {
            // The will as a CONNECT of its own (the codec reads it back): the app in its user name, the client id its publish carries.
            bytes = MqttEncoder.Encode(
                new MqttConnect
                {
                    ProtocolLevel = v5 ? (byte)5 : (byte)4,
                    ClientId = principal.ClientId ?? string.Empty,
                    UserName = app,
                    HasWill = true,
                    WillQos = will.WillQos,
                    WillRetain = will.WillRetain,
                    WillTopic = topic,
                    WillPayload = will.WillPayload,
                    WillProperties = v5 ? will.WillProperties : null,
                },
                v5 ? (byte)5 : (byte)4);
        }

        return RegisterWillAsync(app, clientId, bytes, TimeSpan.FromSeconds(delay));
    }

    private async Task<string?> RegisterWillAsync(string app, string clientId, ReadOnlyMemory<byte> will, TimeSpan delay)
    {
        try
        {
            return await Wills.RegisterAsync(ClaimScope, app, clientId, will, delay, Node.Stopping).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogWillStoreFailed(Logger, ex, app, clientId);
            return null;
        }
    }

    /// <summary>
    /// Removes a connection's will entry (<see cref="RegisterWill"/>) as it ends; whether this node may publish its will:
    /// not when another node took it, this one having been presumed dead. Without an entry (none was written), it may.
    /// </summary>
    public async Task<bool> ReleaseWillAsync(string app, string clientId, Task<string?> registration)
    {
        if (await registration.ConfigureAwait(false) is not { } token)
        {
            return true;
        }

        try
        {
            return await Wills.ReleaseAsync(ClaimScope, app, clientId, token, CancellationToken.None).ConfigureAwait(false) != WillRelease.Gone;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Unknown whether another node took it: published here too (at least once).
            LogWillStoreFailed(Logger, ex, app, clientId);
            return true;
        }
    }

    // A will another node left when it died (RegisterWill's bytes), taken here once: published as that node would have.
    private async Task PublishOrphanWillAsync(ReadOnlyMemory<byte> bytes)
    {
        var buffer = new System.Buffers.ReadOnlySequence<byte>(bytes);
        MqttPacket? packet = null;
        try
        {
            MqttDecoder.TryRead(ref buffer, 0, int.MaxValue, out packet);
        }
        catch (MqttProtocolException)
        {
            // Not one this version wrote.
        }

        if (packet is not MqttConnect { UserName: { } app, WillTopic: not null } will)
        {
            LogOrphanUnreadable(Logger, bytes.Length);
            return;
        }

        LogOrphanWill(Logger, app, will.WillTopic);
        await PublishWillAsync(WillOf(will, app, will.ClientId.Length == 0 ? null : will.ClientId, will.ProtocolLevel == 5)).ConfigureAwait(false);
    }

    /// <summary>
    /// Keeps a routed retained publish (its epoch and seq from routing) as its topic's retained message, or clears it. Not
    /// kept (the app is at Relay:Mqtt:MaxRetainedPerApp, or the store cannot be reached) is logged: the publish itself
    /// went out, so it is still acknowledged.
    /// </summary>
    public async ValueTask RetainAsync(RelayMessage message)
    {
        try
        {
            if (await Retained.SetAsync(message, Options.MaxRetainedPerApp, Node.Stopping).ConfigureAwait(false) == RetainedOutcome.Full)
            {
                LogRetainedFull(Logger, message.App, message.Channel, Options.MaxRetainedPerApp);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRetainFailed(Logger, ex, message.App, message.Channel);
        }
    }

    public void Dispose()
    {
        _claimsWatch.Dispose();
        _willsWatch.Dispose();
        _expiry.Dispose();
    }

    // Another node's connection claimed a client id: this node's connection with it, if any, is taken over (if its own
    // claim came earlier), and a session left here unattached ends, since the client now lives elsewhere.
    private void ClaimedElsewhere(ClientClaim claim)
    {
        if (claim.Scope != ClaimScope)
        {
            return;
        }

        var key = (claim.App, claim.ClientId);
        if (_clients.TryGetValue(key, out var connection))
        {
            connection.ClaimedElsewhere(claim.Number, claim.EndsSession);
        }
        else if (_sessions.TryGetValue(key, out var session) && !session.Attached && (session.Claim == 0 || claim.Number > session.Claim))
        {
            // A claim heard late, older than the one this session was opened under, changes nothing.
            _ = EndMovedSessionAsync(session, claim.EndsSession);
        }
    }

    /// <summary>
    /// Hands <paramref name="session"/> over to the node where its client connected, once the connection taken over from
    /// here has handed it back (unless a connection here holds it again by then): its final state is written to the store
    /// (that node waits for it), then it ends here without its delayed will. When that connection ended the session
    /// instead (<paramref name="ended"/>: MQTT Clean Start 1), nothing is handed over and it ends here as a session ends:
    /// its delayed will is published now, from here, the one node holding it (MQTT 5 §3.1.3.2.2).
    /// </summary>
    public async Task EndMovedSessionAsync(MqttSession session, bool ended)
    {
        try
        {
            await session.WhenReleased.WaitAsync(Node.Options.CloseTimeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // The node aborts a connection that does not close within CloseTimeout.
        }

        if (!session.Attached && _sessions.TryGetValue((session.App, session.ClientId), out var current) && ReferenceEquals(current, session))
        {
            if (session.LostWhileAway)
            {
                // Not to be resumed (see OpenSessionAsync): it ends, in the store too.
                LogSessionLost(Logger, session.App, session.ClientId);
                await DiscardAsync(session).ConfigureAwait(false);
                return;
            }

            if (ended)
            {
                // Clean Start 1 elsewhere: that node empties the store's entry and waits for nothing from here; the
                // entry's delete below leaves its later claim's alone.
                LogSessionEndedElsewhere(Logger, session.App, session.ClientId);
                await DiscardAsync(session).ConfigureAwait(false);
                return;
            }

            // The client connected again (elsewhere) to resume the session: its delayed will is cancelled.
            var written = await SaveAsync(session, held: false).ConfigureAwait(false);
            LogSessionMoved(Logger, session.App, session.ClientId, written);
            await DiscardAsync(session, handedOver: true).ConfigureAwait(false);
        }
    }

    /// <summary>The scope of MQTT's client-id claims.</summary>
    public const string ClaimScope = "mqtt";

    private void ExpireSessions()
    {
        var now = Node.Time.GetUtcNow().UtcTicks;
        var period = Options.PositionWriteSeconds;
        var writePositions = Store.Durable && period > 0 && ++_sweeps % period == 0;
        foreach (var (_, session) in _sessions)
        {
            if (session.TakeWill(now) is { } will)
            {
                _ = PublishWillAsync(will);
            }

            if (now >= session.ExpiresAtTicks)
            {
                LogSessionExpired(Logger, session.App, session.ClientId, session.ExpirySeconds);
                _ = DiscardQuietlyAsync(session);
            }
            else if (now >= session.RefreshDueTicks && session.Attached)
            {
                // The store's entry of a session a connection holds is written again before it expires.
                session.RefreshDueTicks = now + (HeldTtl(session).Ticks / 2);
                _ = SaveAsync(session, held: true);
            }
            else if (writePositions && session.ExpirySeconds > 0 && session.Attached && session.TakeMoved())
            {
                // Its positions as they are now (what the client has not acknowledged counts as not delivered), so a node
                // resuming it after this one died sends again a period of deliveries, not all since it subscribed.
                _ = SaveAsync(session, held: true);
            }
        }
    }

    private async Task DiscardQuietlyAsync(MqttSession session)
    {
        try
        {
            await DiscardAsync(session).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogDiscardFailed(Logger, ex, session.App, session.ClientId);
        }
    }

    [LoggerMessage(EventId = 1465, Level = LogLevel.Warning, Message = "MQTT will of {App}/{ClientId}: the will store did not answer; if this node dies, no other node publishes this connection's will")]
    private static partial void LogWillStoreFailed(ILogger logger, Exception exception, string app, string clientId);

    [LoggerMessage(EventId = 1466, Level = LogLevel.Information, Message = "MQTT will of app {App} to '{Channel}' published here: the node that held its connection stopped beating (Relay:Redis:NodeTtl)")]
    private static partial void LogOrphanWill(ILogger logger, string app, string channel);

    [LoggerMessage(EventId = 1467, Level = LogLevel.Error, Message = "MQTT will of a dead node ({Bytes} bytes) could not be read, so it is not published (written by another version of Relay?)")]
    private static partial void LogOrphanUnreadable(ILogger logger, int bytes);

    [LoggerMessage(EventId = 1450, Level = LogLevel.Warning, Message = "MQTT session {App}/{ClientId} dropped its oldest queued message (channel {Channel}): more than Relay:Mqtt:MaxQueuedMessages ({Messages}) or MaxQueuedBytes ({Bytes}) waited for the client; the next connection gets them from the channel's history if it still holds them (later drops on the channel are not logged)")]
    private static partial void LogQueuedDropped(ILogger logger, string app, string clientId, string? channel, int messages, long bytes);

    [LoggerMessage(EventId = 1468, Level = LogLevel.Information, Message = "MQTT session {App}/{ClientId} resumed: {Refilled} of the {Dropped} messages its queue dropped while the client was away were read back from history (the rest it no longer holds)")]
    private static partial void LogRefilled(ILogger logger, string app, string clientId, int refilled, long dropped);

    [LoggerMessage(EventId = 1469, Level = LogLevel.Warning, Message = "MQTT session {App}/{ClientId}: what its queue dropped of '{Channel}' could not be read back from history; the client resumes without it")]
    private static partial void LogRefillFailed(ILogger logger, Exception exception, string app, string clientId, string channel);

    [LoggerMessage(EventId = 1451, Level = LogLevel.Information, Message = "MQTT session {App}/{ClientId} expired unresumed after {Seconds} s")]
    private static partial void LogSessionExpired(ILogger logger, string app, string clientId, uint seconds);

    [LoggerMessage(EventId = 1452, Level = LogLevel.Warning, Message = "MQTT session {App}/{ClientId} not resumed: messages for its QoS 1/2 subscriptions were lost between services while it was away")]
    private static partial void LogSessionLost(ILogger logger, string app, string clientId);

    [LoggerMessage(EventId = 1454, Level = LogLevel.Error, Message = "MQTT will of app {App} to '{Channel}' could not be published")]
    private static partial void LogWillFailed(ILogger logger, Exception exception, string app, string channel);

    [LoggerMessage(EventId = 1453, Level = LogLevel.Error, Message = "MQTT session {App}/{ClientId}: ending it failed")]
    private static partial void LogDiscardFailed(ILogger logger, Exception exception, string app, string clientId);

    [LoggerMessage(EventId = 1456, Level = LogLevel.Information, Message = "MQTT session {App}/{ClientId} ended here: the client connected to another node (its state written for that node: {Written})")]
    private static partial void LogSessionMoved(ILogger logger, string app, string clientId, bool written);

    [LoggerMessage(EventId = 1464, Level = LogLevel.Information, Message = "MQTT session {App}/{ClientId} ended here: the client connected to another node with a clean start (its delayed will, if any, is published now)")]
    private static partial void LogSessionEndedElsewhere(ILogger logger, string app, string clientId);

    [LoggerMessage(EventId = 1457, Level = LogLevel.Information, Message = "MQTT session {App}/{ClientId} resumed from the session store ({Subscriptions} subscriptions, {Channels} channels to recover from history)")]
    private static partial void LogSessionTaken(ILogger logger, string app, string clientId, int subscriptions, int channels);

    [LoggerMessage(EventId = 1458, Level = LogLevel.Warning, Message = "MQTT session {App}/{ClientId}: the node holding it did not hand it over within {Seconds} s (gone?); resumed as it last wrote it, so messages after that may come again")]
    private static partial void LogHandOffLate(ILogger logger, string app, string clientId, double seconds);

    [LoggerMessage(EventId = 1459, Level = LogLevel.Error, Message = "MQTT session {App}/{ClientId}: the session store did not answer; the session is this node's only (another node resuming it gets it as last written, or none)")]
    private static partial void LogStoreFailed(ILogger logger, Exception exception, string app, string clientId);

    [LoggerMessage(EventId = 1422, Level = LogLevel.Warning, Message = "MQTT app {App}: '{Channel}' published but not retained: the app holds retained messages on {Max} topics (Relay:Mqtt:MaxRetainedPerApp)")]
    private static partial void LogRetainedFull(ILogger logger, string app, string channel, int max);

    [LoggerMessage(EventId = 1455, Level = LogLevel.Error, Message = "MQTT app {App}: '{Channel}' was published but could not be kept as its retained message (the retained store did not answer); publish it again with RETAIN")]
    private static partial void LogRetainFailed(ILogger logger, Exception exception, string app, string channel);
}
