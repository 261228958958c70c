using System.Runtime.InteropServices;
using Relay.Core.Channels;
using Relay.Core.Messages;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// One client id's session on this node: its subscriptions (the node's index delivers to them through the session) and,
/// while no connection holds it, the QoS 1 and 2 messages that arrive and the deliveries its last connection left
/// unacknowledged, sent again (DUP) to the next connection that resumes it. A clean session lives as long as its
/// connection; a persistent one (MQTT 3.1.1 clean session 0, MQTT 5 Session Expiry Interval) until it expires
/// unresumed. Kept live in the node holding it; the bus's session store (<see cref="MqttStoredSession"/>) carries it to
/// the next node the client connects to (docs/mqtt.md, "Sessions across nodes").
/// </summary>
internal sealed class MqttSession(MqttBroker broker, string app, string clientId)
{
    /// <summary>Channels remembered for duplicate delivery without forgetting any: 64 covers a device's own topics.</summary>
    private const int DeliveredChannelsKept = 64;

    /// <summary>
    /// Seconds a channel's last seq is remembered with no delivery: a message's copies come in one dispatch pass (microseconds),
    /// or, for a channel subscribed while a pattern already delivered it, after the subscription's catch-up (one routing request).
    /// </summary>
    private const int DeliveredForgetSeconds = 10;

    // The session's state changes under lock (this): a Lock object would cost 40 B per session, and nothing else locks a session.
    private MqttConnection? _connection;

    // What a session away from its connection, with a delayed will, with QoS 2 publishes awaiting release, with
    // Subscription Identifiers or waited on by a takeover needs, made on first use (Side): most sessions, an idle clean
    // one's connection attached, hold none of it (72 B of fields).
    private SideState? _side;

    // Whether a connection holds the session and has not handed it back; the task a takeover waits on is made only
    // when one waits (under the gate).
    private bool _held;

    // The last seq delivered per channel, so overlapping filters send a message once (DeliveredFor): the first channel in
    // these fields, as most sessions have one (a dictionary of one was 224 bytes per idle connection, docs/benchmarks.md),
    // the others in a dictionary made for the second. Under the Subscriptions lock.
    private string? _firstChannel;
    private Delivered _firstDelivered;
    private Dictionary<string, Delivered>? _delivered;
    private int _deliveredGeneration;

    // Something was delivered since the session was last written (MqttOptions.PositionWriteSeconds); under Subscriptions.
    private bool _moved;

    // The store's writes of this session, numbered so a later snapshot always wins (taken with the queue's lock).
    private long _version;

    public MqttBroker Broker { get; } = broker;

    public string App { get; } = app;

    public string ClientId { get; } = clientId;

    /// <summary>The filters subscribed, each with its sink in the node's index (locked by itself).</summary>
    public MqttSubscriptionMap Subscriptions { get; } = new();

    /// <summary>
    /// The subscriptions with an MQTT 5 Subscription Identifier (shared ones aside), by filter: a delivery carries the
    /// identifier of every one matching its topic (MQTT 5 §3.3.4), looked up when it is written.
    /// </summary>
    public PatternIndex<MqttSubscriptionSink>? Identified => Volatile.Read(ref _side) is { } side ? Volatile.Read(ref side.Identified) : null;

    /// <summary><see cref="Identified"/>, made on the first subscription with an identifier (most sessions have none).</summary>
    public PatternIndex<MqttSubscriptionSink> IdentifiedForAdding
    {
        get
        {
            var side = Side;
            return Volatile.Read(ref side.Identified) ?? Interlocked.CompareExchange(ref side.Identified, new PatternIndex<MqttSubscriptionSink>(), null) ?? side.Identified!;
        }
    }

    // Made once, whichever lock its first user holds (the session's or its subscriptions').
    private SideState Side => Volatile.Read(ref _side) ?? Interlocked.CompareExchange(ref _side, new SideState(), null) ?? _side!;

    /// <summary>Whether the session outlives its connection, and for how long unresumed (0: clean).</summary>
    public uint ExpirySeconds { get; set; }

    /// <summary>When an unresumed session ends (UTC ticks); long.MaxValue while a connection holds it.</summary>
    public long ExpiresAtTicks { get; private set; } = long.MaxValue;

    /// <summary>Messages for a QoS 1 or 2 subscription were lost between services: the session is not resumed.</summary>
    public bool LostWhileAway { get; private set; }

    /// <summary>Set once its subscriptions are removed: the session is gone, whatever still refers to it.</summary>
    public bool Discarded { get; set; }

    /// <summary>The claim of the connection that holds the session (the store's entry is written under it); 0: none known.</summary>
    public long Claim { get; set; }

    /// <summary>Whether the bus's session store has an entry for this session (taken or written for it).</summary>
    public bool Stored { get; set; }

    /// <summary>When the store's entry of a session held by a connection is next written again, before it expires (UTC ticks).</summary>
    public long RefreshDueTicks { get; set; } = long.MaxValue;


    /// <summary>Completes when no connection holds the session (the last one has handed back what it had not delivered).</summary>
    public Task WhenReleased
    {
        get
        {
            lock (this)
            {
                return _held ? (Side.Released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task : Task.CompletedTask;
            }
        }
    }

    /// <summary>A delivery from the node (any thread): to the connection holding the session, or kept while none does.</summary>
    public void Deliver(RelayMessage message, byte qos, bool retain)
    {
        // Under the gate from the record of the channel's last delivery to the enqueue: a snapshot that reads the record
        // finds the delivery queued once it holds the gate (Snapshot), so it never starts the channel past a delivery
        // that is in neither.
        lock (this)
        {
            // A connection whose filters overlap gets a message once (at the QoS of the filter that delivered it first).
            // Presence events reach a channel's own subscription only, which a session holds once.
            if (message.PresenceAction is null && !FirstCopy(message))
            {
                return;
            }

            // MQTT 5 §3.3.4: the one copy goes at the highest QoS of the matching subscriptions; §3.8.4: no higher than the
            // publish's. Only a session with more than one subscription looks at the others.
            if (Subscriptions.Count > 1)
            {
                qos = HighestQos(message, qos);
            }

            qos = MessageProperties.DeliveryQos(message.Properties, qos);

            // A delivery another node's connection sent and the client did not acknowledge goes again with its packet id (DUP).
            var packetId = qos > 0 && _side?.Resends is { Count: > 0 } ? TakeResend(message) : (ushort)0;
            if (_connection is { } connection)
            {
                connection.Enqueue(new MqttOutbound(message, null, qos, Retain: retain, PacketId: packetId));
            }
            else if (qos > 0 && !Discarded)
            {
                // MQTT 3.1.1 §4.1, 5.0 §4.1: QoS 1 and 2 messages are kept for an absent client; QoS 0 ones may be dropped.
                Keep(new MqttOutbound(message, null, qos, Retain: retain, PacketId: packetId), first: false);
            }
        }
    }

    /// <summary>The highest QoS among this session's subscriptions (shared ones aside) that deliver <paramref name="message"/>.</summary>
    private byte HighestQos(RelayMessage message, byte qos)
    {
        lock (Subscriptions)
        {
            foreach (var (_, sink) in Subscriptions)
            {
                if (sink.Qos > qos && sink.JoinedShare is null && !sink.IsOwn(message) && ChannelName.PatternMatches(sink.TopicFilter, message.Channel))
                {
                    qos = sink.Qos;
                }
            }
        }

        return qos;
    }

    /// <summary>
    /// A shared subscription's delivery to this member: not checked against the session's other copies (MQTT 5 §4.8.2:
    /// a non-shared subscription's copy comes besides). False when no connection holds the session and it keeps nothing
    /// (a clean session ending), so the group offers the message to another member.
    /// </summary>
    public bool DeliverShared(RelayMessage message, MqttSubscriptionSink member, bool retain, bool evenAway)
    {
        var qos = MessageProperties.DeliveryQos(message.Properties, member.Qos);
        lock (this)
        {
            if (_connection is { } connection && connection.Accepting)
            {
                connection.Enqueue(new MqttOutbound(message, null, qos, Retain: retain, Shared: member));
                return true;
            }

            if (evenAway && qos > 0 && !Discarded && ExpirySeconds > 0)
            {
                Keep(new MqttOutbound(message, null, qos, Retain: retain, Shared: member), first: false);
                return true;
            }

            return false;
        }
    }

    /// <summary>Whether a connection holds the session and takes deliveries now.</summary>
    public bool Attached => Volatile.Read(ref _connection) is { Accepting: true };

    /// <summary>
    /// Messages matching <paramref name="sink"/>'s filter were lost before this node: the connection is told, and a QoS 1
    /// or 2 subscription's session will not be resumed (the next CONNACK says no session is present).
    /// </summary>
    public void Lost(MqttSubscriptionSink sink)
    {
        lock (this)
        {
            if (sink.Qos > 0)
            {
                LostWhileAway = true;
            }

            _connection?.Lost(sink);
        }
    }

    /// <summary>
    /// <paramref name="connection"/> holds the session from now: what was kept goes to it first (deliveries left
    /// unacknowledged again, with DUP and their packet ids), then live deliveries.
    /// </summary>
    public void Attach(MqttConnection connection)
    {
        lock (this)
        {
            _connection = connection;
            _held = true;

            // MQTT 5 §3.1.3.2.2: a connection to the session before the will's delay passed means no will.
            ExpiresAtTicks = long.MaxValue;
            if (_side is { } side)
            {
                side.Will = null;
                if (side.Queued is { } queued)
                {
                    foreach (var item in queued)
                    {
                        connection.Enqueue(item);
                    }
                }

                side.Queued = null;
                side.QueuedBytes = 0;
                side.Dropped = null;
                side.Refilling = false;
                if (side.AwaitingRelease is { } ids)
                {
                    connection.AwaitRelease(ids);
                    side.AwaitingRelease = null;
                }

                if (side.Resends is { Count: > 0 } resends)
                {
                    connection.Reserve(resends.Values.Select(static r => r.PacketId));
                }
            }
        }

        SharesChanged();
    }

    /// <summary>The connection stops holding the session: deliveries from now are kept (a persistent session) or dropped.</summary>
    public void Detach(MqttConnection connection, DateTimeOffset now)
    {
        lock (this)
        {
            if (ReferenceEquals(_connection, connection))
            {
                _connection = null;
                ExpiresAtTicks = now.UtcTicks + (TimeSpan.TicksPerSecond * ExpirySeconds);
            }
        }

        SharesChanged();
    }

    // The groups this session is a member of learn that it connected or went away (docs/mqtt.md: a node with no
    // connected member is not chosen for the group's messages).
    private void SharesChanged()
    {
        lock (Subscriptions)
        {
            foreach (var (_, sink) in Subscriptions)
            {
                sink.JoinedShare?.MembersChanged();
            }
        }
    }

    /// <summary>
    /// The detached connection hands back what it had not delivered (unacknowledged first, then never sent), ahead of what
    /// was kept since; then the session is released for the next connection.
    /// </summary>
    public void HandBack(IReadOnlyList<MqttOutbound> undelivered)
    {
        lock (this)
        {
            if (_connection is null && !Discarded)
            {
                for (var i = undelivered.Count - 1; i >= 0; i--)
                {
                    Keep(undelivered[i], first: true, trim: false);
                }

                Trim();
            }

            _held = false;
            if (_side is { Released: { } released } side)
            {
                released.TrySetResult();
                side.Released = null;
            }
        }
    }

    /// <summary>
    /// The QoS 2 deliveries awaiting PUBCOMP of the session as another node held it: each is released again (PUBREL with
    /// its packet id, its in-flight slot held until PUBCOMP) ahead of everything else the next connection gets.
    /// </summary>
    public void KeepReleases(IReadOnlyList<ushort> packetIds)
    {
        lock (this)
        {
            for (var i = packetIds.Count - 1; i >= 0; i--)
            {
                Keep(MqttOutbound.ReleaseOnly(packetIds[i]), first: true);
            }
        }
    }

    /// <summary>
    /// The client's QoS 2 publishes answered PUBREC and awaiting PUBREL, kept for the next connection (from the one that
    /// let the session go, or another node's): a resend of one is answered PUBREC and not published again, its PUBREL
    /// PUBCOMP (MQTT 3.1.1/5 §4.3.3, §4.1). The client has at most Receive Maximum of them; more (MQTT 3.1.1 has no such
    /// limit) are not kept.
    /// </summary>
    public void KeepAwaitingRelease(IReadOnlyCollection<ushort> packetIds)
    {
        lock (this)
        {
            if (_connection is null && !Discarded && packetIds.Count > 0)
            {
                Side.AwaitingRelease = [.. packetIds.Take(Broker.Options.ReceiveMaximum)];
            }
        }
    }

    /// <summary>
    /// The deliveries another node's connection sent and the client had not acknowledged (MQTT §4.4): each goes again, with
    /// its packet id and DUP, when the resumed subscriptions recover it from history; the connection that attaches holds
    /// those ids for them meanwhile (<see cref="MqttConnection.Reserve"/>).
    /// </summary>
    public void KeepResends(IReadOnlyList<MqttStoredSession.Resend> resends)
    {
        lock (this)
        {
            var kept = Side.Resends ??= [];
            foreach (var resend in resends)
            {
                kept[(resend.Channel, resend.Seq)] = resend;
            }
        }
    }

    /// <summary>The packet ids of deliveries kept to go again that history did not give back (they are given up: ids freed).</summary>
    public IReadOnlyCollection<ushort> DropResends()
    {
        lock (this)
        {
            if (_side?.Resends is not { Count: > 0 } resends)
            {
                return [];
            }

            _side.Resends = null;
            return [.. resends.Values.Select(static r => r.PacketId)];
        }
    }

    // The packet id <paramref name="message"/> was sent with on another node, taken once; 0 when it is not one. Under lock (this).
    private ushort TakeResend(RelayMessage message)
    {
        var resends = _side!.Resends!;
        if (resends.Remove((message.Channel, message.Seq), out var resend) && string.Equals(resend.Epoch, message.Epoch, StringComparison.Ordinal))
        {
            return resend.PacketId;
        }

        return 0;
    }

    /// <summary>Keeps a will to publish at <paramref name="dueTicks"/>, unless a connection resumes the session first.</summary>
    public void DelayWill(MqttWill will, long dueTicks)
    {
        lock (this)
        {
            Side.Will = (will, dueTicks);
        }
    }

    /// <summary>The delayed will, once due at <paramref name="nowTicks"/> (or now whatever its time, the session ending); taken once.</summary>
    public MqttWill? TakeWill(long nowTicks)
    {
        lock (this)
        {
            if (_side is { Will: { } pending } side && nowTicks >= pending.DueTicks)
            {
                side.Will = null;
                return pending.Will;
            }

            return null;
        }
    }

    /// <summary>Once a second: channels quiet for a while are forgotten once many are remembered.</summary>
    public void ForgetQuietChannels()
    {
        lock (Subscriptions)
        {
            var generation = ++_deliveredGeneration;
            if (_delivered is not { } delivered || delivered.Count + (_firstChannel is null ? 0 : 1) <= DeliveredChannelsKept)
            {
                return;
            }

            // A channel subscribed by name keeps its position: the session's next node resumes it from there.
            if (_firstChannel is { } first && generation - _firstDelivered.Generation > DeliveredForgetSeconds && !IsSubscribedByName(first))
            {
                _firstChannel = null;
                _firstDelivered = default;
            }

            foreach (var (channel, last) in delivered)
            {
                if (generation - last.Generation > DeliveredForgetSeconds && !IsSubscribedByName(channel))
                {
                    delivered.Remove(channel);
                }
            }

            if (delivered.Count == 0)
            {
                _delivered = null;
            }
            else
            {
                delivered.TrimExcess();
            }
        }
    }

    /// <summary>
    /// A subscription by name went live at <paramref name="position"/> (it delivers every message after it): the
    /// channel's position for the store, unless a later delivery set one already.
    /// </summary>
    public void Started(string channel, ChannelPosition position)
    {
        lock (Subscriptions)
        {
            ref var last = ref DeliveredFor(channel, out var known);
            if (!known || !string.Equals(last.Epoch, position.Epoch, StringComparison.Ordinal) || last.Seq < position.Seq)
            {
                last = new Delivered(position.Epoch, position.Seq, _deliveredGeneration);
            }
        }
    }

    /// <summary>
    /// The session as the next node resumes it, and the number of this write: its subscriptions (shared ones too, which
    /// the next node joins live) and, per channel the others match, the seq before the oldest message it kept
    /// undelivered (what a connection handed back, and what came while away), else the last one it was given. What came
    /// after is in history.
    /// </summary>
    public (MqttStoredSession State, long Version) Snapshot()
    {
        var subscriptions = new List<MqttStoredSession.Subscription>();
        var filters = new PatternIndex<string>();
        lock (Subscriptions)
        {
            foreach (var (filter, sink) in Subscriptions)
            {
                subscriptions.Add(new MqttStoredSession.Subscription(filter, sink.Options, sink.Identifier));

                // A shared subscription has no position: the next node joins the group live.
                if (!filter.StartsWith("$share/", StringComparison.Ordinal))
                {
                    filters.Add(sink.TopicFilter, filter);
                }
            }
        }

        var given = new Dictionary<string, Delivered>(StringComparer.Ordinal);
        lock (Subscriptions)
        {
            if (_firstChannel is { } first)
            {
                given[first] = _firstDelivered;
            }

            if (_delivered is { } delivered)
            {
                foreach (var (channel, last) in delivered)
                {
                    given[channel] = last;
                }
            }
        }

        long version;
        var oldest = new Dictionary<string, Delivered>(StringComparer.Ordinal);
        List<ushort>? releases = null;
        List<MqttStoredSession.Resend>? resends = null;
        ushort[]? awaitingRelease;
        MqttConnection? connection;
        lock (this)
        {
            version = ++_version;
            awaitingRelease = _side?.AwaitingRelease;
            connection = _connection;
            foreach (var (channel, dropped) in _side?.Dropped ?? [])
            {
                oldest[channel] = new Delivered(dropped.Epoch, dropped.First, 0);
            }

            // Owed again from an earlier node and not yet recovered: still owed, with the same ids.
            foreach (var (_, resend) in _side?.Resends ?? [])
            {
                (resends ??= []).Add(resend);
                Oldest(oldest, resend.Channel, resend.Epoch, resend.Seq);
            }

            foreach (var item in _side?.Queued ?? [])
            {
                Unacknowledged(item, oldest, ref releases, ref resends);
            }
        }

        // Written while a connection holds the session (a subscribe, the periodic refresh): what the client has not
        // acknowledged yet counts as not delivered, or a node resuming the session after this one died would start past it.
        if (connection is not null)
        {
            var unacknowledged = new List<MqttOutbound>();
            connection.AddUnacknowledged(unacknowledged);
            foreach (var item in unacknowledged)
            {
                Unacknowledged(item, oldest, ref releases, ref resends);
            }
        }

        foreach (var (channel, first) in oldest)
        {
            given[channel] = first with { Seq = first.Seq - 1 };
        }

        var positions = new List<MqttStoredSession.Position>();
        var matched = new List<string>();
        foreach (var (channel, at) in given)
        {
            matched.Clear();
            filters.Match(channel, matched);
            if (matched.Count > 0)
            {
                positions.Add(new MqttStoredSession.Position(channel, at.Epoch, at.Seq));
            }
        }

        return (new MqttStoredSession(ExpirySeconds, subscriptions, positions, releases, awaitingRelease, resends), version);
    }

    // A delivery the client has not acknowledged, for the snapshot: its channel starts before it, and one sent already
    // goes again from the next node with its packet id; or (a QoS 2 delivery awaiting PUBCOMP, the client's already)
    // the next node sends its PUBREL again.
    private static void Unacknowledged(MqttOutbound item, Dictionary<string, Delivered> oldest, ref List<ushort>? releases, ref List<MqttStoredSession.Resend>? resends)
    {
        if (item.Release)
        {
            (releases ??= []).Add(item.PacketId);
            return;
        }

        // A shared delivery is its group's.
        if (item is { Message: { PresenceAction: null } message, Shared: null })
        {
            Oldest(oldest, message.Channel, message.Epoch, message.Seq);
            if (item is { PacketId: > 0, Qos: > 0 })
            {
                (resends ??= []).Add(new MqttStoredSession.Resend(message.Channel, message.Epoch, message.Seq, item.PacketId));
            }
        }
    }

    private static void Oldest(Dictionary<string, Delivered> oldest, string channel, string epoch, long seq)
    {
        if (!oldest.TryGetValue(channel, out var first) || !string.Equals(first.Epoch, epoch, StringComparison.Ordinal) || seq < first.Seq)
        {
            oldest[channel] = new Delivered(epoch, seq, 0);
        }
    }

    private bool IsSubscribedByName(string channel)
    {
        lock (Subscriptions)
        {
            return Subscriptions.ContainsKey(channel);
        }
    }

    // Bounded by Relay:Mqtt:MaxQueuedMessages and MaxQueuedBytes (not while a resume refills it): the oldest message
    // never sent goes first (logged once per channel while the client is away). Deliveries already sent (awaiting
    // PUBACK, PUBREC or PUBCOMP: at most a window's worth) stay: the client holds their packet ids, and a QoS 2 one sent
    // again with another id would be a second copy. What each channel dropped is remembered (Dropped): the next
    // connection here reads it back from history (TakeDropped, Refill), another node resumes the channel before it.
    private void Keep(MqttOutbound item, bool first, bool trim = true)
    {
        var side = Side;
        var queued = side.Queued ??= [];
        if (first)
        {
            queued.AddFirst(item);
        }
        else
        {
            queued.AddLast(item);
        }

        side.QueuedBytes += MqttOutbound.Size(item);
        if (trim)
        {
            Trim();
        }
    }

    // One pass from the oldest: drops what was never sent until the queue is within its bounds (what was sent stays).
    private void Trim()
    {
        if (_side is not { Queued: { } queued } side)
        {
            return;
        }

        var options = Broker.Options;
        var node = queued.First;
        while (!side.Refilling && node is not null && (queued.Count > options.MaxQueuedMessages || side.QueuedBytes > options.MaxQueuedBytes))
        {
            var next = node.Next;
            var oldest = node.Value;
            if (oldest.Release || oldest.PacketId != 0)
            {
                node = next;
                continue;
            }

            queued.Remove(node);
            node = next;
            side.QueuedBytes -= MqttOutbound.Size(oldest);
            if (oldest is { Message: { PresenceAction: null } message, Shared: null })
            {
                var dropped = side.Dropped ??= new Dictionary<string, DroppedRange>(StringComparer.Ordinal);
                ref var range = ref CollectionsMarshal.GetValueRefOrAddDefault(dropped, message.Channel, out var known);
                if (!known)
                {
                    range = new DroppedRange(message.Epoch, message.Seq, message.Seq, oldest.Qos);
                    Broker.QueuedMessageDropped(this, message.Channel);
                }
                else if (string.Equals(range.Epoch, message.Epoch, StringComparison.Ordinal))
                {
                    range = new DroppedRange(range.Epoch, Math.Min(range.First, message.Seq), Math.Max(range.Last, message.Seq), Math.Max(range.Qos, oldest.Qos));
                }
            }
            else
            {
                Broker.QueuedMessageDropped(this, oldest.Message?.Channel);
            }
        }
    }

    /// <summary>Whether the queue dropped messages while the client was away (<see cref="TakeDropped"/>).</summary>
    public bool DroppedWhileAway
    {
        get
        {
            lock (this)
            {
                return _side?.Dropped is { Count: > 0 };
            }
        }
    }

    /// <summary>
    /// What the queue dropped, per channel (its epoch, the first and last seq dropped, the highest QoS), for a connection
    /// about to resume the session here: taken, and the queue keeps everything from now until it attaches, so nothing
    /// more is dropped meanwhile. The caller reads the ranges back from history and gives them to <see cref="Refill"/>.
    /// </summary>
    public List<(string Channel, DroppedRange Range)> TakeDropped()
    {
        lock (this)
        {
            var side = Side;
            side.Refilling = true;
            var taken = side.Dropped?.Select(static d => (d.Key, d.Value)).ToList() ?? [];
            side.Dropped = null;
            return taken;
        }
    }

    /// <summary>
    /// Messages the queue had dropped, read back from history (oldest first per channel): they go after the deliveries
    /// already sent (those go again first, with DUP) and before everything else queued, which came after them.
    /// </summary>
    public void Refill(IReadOnlyList<MqttOutbound> messages)
    {
        lock (this)
        {
            if (Discarded || _connection is not null || messages.Count == 0)
            {
                return;
            }

            var side = Side;
            var queued = side.Queued ??= [];
            var after = queued.First;
            LinkedListNode<MqttOutbound>? last = null;
            while (after is not null && (after.Value.Release || after.Value.PacketId != 0))
            {
                last = after;
                after = after.Next;
            }

            // One still queued (sent, awaiting its acknowledgement) is not added twice.
            var present = new HashSet<(string, long)>();
            foreach (var item in queued)
            {
                if (item.Message is { } message)
                {
                    present.Add((message.Channel, message.Seq));
                }
            }

            foreach (var item in messages)
            {
                if (present.Add((item.Message!.Channel, item.Message.Seq)))
                {
                    last = last is null ? queued.AddFirst(item) : queued.AddAfter(last, item);
                    side.QueuedBytes += MqttOutbound.Size(item);
                }
            }
        }
    }

    /// <summary>
    /// Whether no filter of this session has delivered <paramref name="message"/> yet. The node dispatches a channel's
    /// messages in seq order, every matching subscription in one pass, but passes for other channels run on other threads
    /// meanwhile: so the check is per channel (its epoch and last seq), not the last message sent.
    /// </summary>
    private bool FirstCopy(RelayMessage message)
    {
        lock (Subscriptions)
        {
            ref var last = ref DeliveredFor(message.Channel, out var known);
            if (known && message.Seq <= last.Seq && (ReferenceEquals(last.Epoch, message.Epoch) || string.Equals(last.Epoch, message.Epoch, StringComparison.Ordinal)))
            {
                return false;
            }

            last = new Delivered(message.Epoch, message.Seq, _deliveredGeneration);
            _moved = true;
            return true;
        }
    }

    /// <summary>Whether anything was delivered since the last call (the broker's periodic write of positions).</summary>
    public bool TakeMoved()
    {
        lock (Subscriptions)
        {
            var moved = _moved;
            _moved = false;
            return moved;
        }
    }

    /// <summary>The entry for <paramref name="channel"/>'s last delivery (added when not <paramref name="known"/>); under the Subscriptions lock.</summary>
    private ref Delivered DeliveredFor(string channel, out bool known)
    {
        if (_firstChannel is { } first && string.Equals(first, channel, StringComparison.Ordinal))
        {
            known = true;
            return ref _firstDelivered;
        }

        if (_firstChannel is null && (_delivered is null || !_delivered.ContainsKey(channel)))
        {
            _firstChannel = channel;
            known = false;
            return ref _firstDelivered;
        }

        return ref CollectionsMarshal.GetValueRefOrAddDefault(_delivered ??= new Dictionary<string, Delivered>(StringComparer.Ordinal), channel, out known);
    }

    /// <summary>A channel's last message delivered to this session, and the second (of the node's loop) it was.</summary>
    /// <summary>A session's state for the cases most sessions never meet (see <see cref="_side"/>).</summary>
    private sealed class SideState
    {
        // The subscriptions with an MQTT 5 Subscription Identifier (Identified), made on the first.
        public PatternIndex<MqttSubscriptionSink>? Identified;

        // What is kept while no connection holds the session: made on the first (a clean session never needs it).
        public LinkedList<MqttOutbound>? Queued;
        public long QueuedBytes;

        // The task a takeover waits on while a connection holds the session, made only when one waits (under the session's lock).
        public TaskCompletionSource? Released;

        // Per channel, the messages the queue dropped while the client was away (history may still have them): the next
        // connection here reads them back (TakeDropped), and the position the store gets is before the first, so another
        // node sends them.
        public Dictionary<string, DroppedRange>? Dropped;

        // A connection is about to resume the session and refill what the queue dropped: nothing is dropped until it attaches.
        public bool Refilling;

        // The packet ids of the client's QoS 2 publishes awaiting PUBREL, while no connection holds the session (a
        // connection keeps its own set): null for none. At most Relay:Mqtt:ReceiveMaximum.
        public ushort[]? AwaitingRelease;

        // A will waiting out its delay (MQTT 5), and when it is due (UTC ticks).
        public (MqttWill Will, long DueTicks)? Will;

        // Deliveries another node's connection sent and the client did not acknowledge, by channel and seq, until the
        // resumed subscriptions recover each from history (it then goes with its packet id, DUP) or the resume ends.
        public Dictionary<(string Channel, long Seq), MqttStoredSession.Resend>? Resends;
    }

    private readonly record struct Delivered(string Epoch, long Seq, int Generation);

    /// <summary>The messages of one channel the queue dropped: from <paramref name="First"/> to <paramref name="Last"/> of <paramref name="Epoch"/>, at most at <paramref name="Qos"/>.</summary>
    public readonly record struct DroppedRange(string Epoch, long First, long Last, byte Qos);
}
