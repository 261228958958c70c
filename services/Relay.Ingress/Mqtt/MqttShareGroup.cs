using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Relay.Bus.Shares;
using Relay.Core.Messages;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// A shared subscription's group on this node (<c>$share/{group}/{filter}</c>, per app): one subscription in the node's
/// index for all its members, each message going to one member, round robin over the members whose connection takes
/// deliveries (a persistent member that is away keeps a QoS 1/2 message only when no member is connected). Members
/// change under the broker's lock; deliveries read an immutable array, so a delivery takes no lock but the session's.
/// When other nodes may hold members of the same group (<see cref="IShareClaims.AcrossProcesses"/>: the Redis and Dapr
/// buses), each message is first taken through the bus, which picks one node per message (docs/mqtt.md: Shared
/// subscriptions); messages wait for that in a bounded queue, asked about in batches, in the order they came.
/// </summary>
internal sealed partial class MqttShareGroup : IMessageSink
{
    // Messages waiting to be taken, at most this many and Relay:Ingress:SendQueueBytes of them (one connection's send
    // budget: large messages fill the bytes first). A full queue (the bus far behind) delivers here without asking: a
    // message may then reach a member on another node too (at least once), but none is dropped and the node's memory
    // stays bounded.
    private const int MaxWaiting = 65_536;

    // Messages asked about in one round trip at most: enough to keep up with thousands a second over one Redis call each.
    private const int MaxBatch = 256;

    private readonly MqttBroker _broker;
    // Each with the node's timestamp of its arrival: the bus chooses among processes that had joined by then.
    private readonly Channel<(RelayMessage Message, long ArrivedAt)>? _waiting;
    private MqttSubscriptionSink[] _members = [];
    private uint _next;
    private IShareMembership? _membership;
    private int _fullLogged;
    private long _waitingBytes;

    public MqttShareGroup(MqttBroker broker, string app, string name, string filter)
    {
        _broker = broker;
        App = app;
        Name = name;
        Filter = filter;
        if (broker.Shares.AcrossProcesses)
        {
            _waiting = Channel.CreateBounded<(RelayMessage, long)>(new BoundedChannelOptions(MaxWaiting) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        }
    }

    public string App { get; }

    public string Name { get; }

    /// <summary>The topic filter after <c>$share/{group}/</c>.</summary>
    public string Filter { get; }

    /// <summary>The node's subscription, once it is started.</summary>
    public Subscription? Subscription { get; set; }

    public int Count => Volatile.Read(ref _members).Length;

    /// <summary>Joins the group across nodes (once the node's subscription is started, so this node is chosen only for messages it gets).</summary>
    public void Start()
    {
        _membership = _broker.Shares.Join(new ShareGroup(App, Name, Filter), HasConnectedMember);
        if (_waiting is not null)
        {
            _ = TakeLoopAsync(_waiting.Reader, _membership);
        }
    }

    /// <summary>
    /// Leaves the group across nodes (its last member left): other nodes stop choosing this one at once. Messages still
    /// waiting are asked about as before (the live nodes no longer include this one) and end with the loop, unawaited:
    /// a bus slow to answer never holds up the broker's joins and leaves.
    /// </summary>
    public async ValueTask StopAsync()
    {
        if (_membership is { } membership)
        {
            await membership.DisposeAsync().ConfigureAwait(false);
        }

        _waiting?.Writer.TryComplete();
    }

    /// <summary>Adds a member (under the broker's lock).</summary>
    public void Add(MqttSubscriptionSink member)
    {
        Volatile.Write(ref _members, [.. _members, member]);
        MembersChanged();
    }

    /// <summary>Removes a member (under the broker's lock); what it was sent and did not acknowledge is offered again by its connection.</summary>
    public void Remove(MqttSubscriptionSink member)
    {
        Volatile.Write(ref _members, Array.FindAll(_members, m => !ReferenceEquals(m, member)));
        MembersChanged();
    }

    /// <summary>A member joined, left, connected or went away: whether this node has a connected member is told to the bus now.</summary>
    public void MembersChanged() => _membership?.Changed();

    public void Send(RelayMessage message)
    {
        if (_waiting is null)
        {
            Deliver(message);
        }
        else if (Interlocked.Add(ref _waitingBytes, WaitingSize(message)) <= _broker.Node.Options.SendQueueBytes && _waiting.Writer.TryWrite((message, _broker.Node.Time.GetTimestamp())))
        {
            if (Volatile.Read(ref _fullLogged) != 0)
            {
                Volatile.Write(ref _fullLogged, 0);
            }
        }
        else
        {
            // Full (logged once until the queue takes messages again), or the group stopped (no member to give it to).
            Interlocked.Add(ref _waitingBytes, -WaitingSize(message));
            if (!_waiting.Reader.Completion.IsCompleted && Interlocked.Exchange(ref _fullLogged, 1) == 0)
            {
                LogWaitingFull(_broker.Logger, App, Name, Filter, MaxWaiting, _broker.Node.Options.SendQueueBytes);
            }

            Deliver(message);
        }
    }

    // What a waiting message holds: its payload and topic, and the object around them.
    private static long WaitingSize(RelayMessage message) => message.Data.Length + (2L * message.Channel.Length) + 128;

    /// <summary>
    /// Gives <paramref name="message"/> to one member, round robin: first to one whose connection takes it, else (QoS 1/2)
    /// to a persistent member that is away; never to <paramref name="excluding"/>'s session. False when no member took it.
    /// </summary>
    public bool Offer(RelayMessage message, MqttSession? excluding)
    {
        var members = Volatile.Read(ref _members);
        var count = members.Length;
        if (count == 0)
        {
            return false;
        }

        var start = (int)(Interlocked.Increment(ref _next) % (uint)count);
        for (var pass = 0; pass < 2; pass++)
        {
            for (var i = 0; i < count; i++)
            {
                var member = members[(start + i) % count];
                if (ReferenceEquals(member.Session, excluding))
                {
                    continue;
                }

                var retain = member.RetainAsPublished && _broker.PublishedRetained(message);
                if (member.Session.DeliverShared(message, member, retain, evenAway: pass == 1))
                {
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>Messages were lost before this node: MQTT has no word for it, and no one member owns the loss (logged).</summary>
    public void Lost(Subscription subscription) => LogLost(_broker.Logger, App, Name, Filter);

    private void Deliver(RelayMessage message)
    {
        if (!Offer(message, null))
        {
            LogNoMember(_broker.Logger, App, Name, Filter, message.Channel);
        }
    }

    // Whether the node may be chosen for a message: a member's connection takes deliveries. A node whose members are all
    // away is not chosen while another has one connected; when none has, each node keeps the message for its own.
    private bool HasConnectedMember()
    {
        foreach (var member in Volatile.Read(ref _members))
        {
            if (member.Session.Attached)
            {
                return true;
            }
        }

        return false;
    }

    // One reader: messages are asked about in batches, in the order they came, and delivered in that order.
    private async Task TakeLoopAsync(ChannelReader<(RelayMessage Message, long ArrivedAt)> reader, IShareMembership membership)
    {
        var batch = new List<RelayMessage>(MaxBatch);
        var ages = new List<TimeSpan>(MaxBatch);
        var takes = new ShareTake[MaxBatch];
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            ages.Clear();
            while (batch.Count < MaxBatch && reader.TryRead(out var waiting))
            {
                batch.Add(waiting.Message);
                ages.Add(_broker.Node.Time.GetElapsedTime(waiting.ArrivedAt));
            }

            try
            {
                await membership.TakeAsync(batch, ages, takes, _broker.Node.Stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_broker.Node.Stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // The bus did not answer: deliver here (at least once; another node may deliver them too) rather than drop.
                LogTakeFailed(_broker.Logger, ex, App, Name, Filter, batch.Count);
                Array.Fill(takes, ShareTake.Here, 0, batch.Count);
            }

            // A batch's messages count as waiting until the bus has answered for them.
            for (var i = 0; i < batch.Count; i++)
            {
                Interlocked.Add(ref _waitingBytes, -WaitingSize(batch[i]));
                if (takes[i] != ShareTake.Elsewhere)
                {
                    Deliver(batch[i]);
                }
            }
        }
    }

    [LoggerMessage(EventId = 1460, Level = LogLevel.Debug, Message = "MQTT shared subscription $share/{Group}/{Filter} of app {App}: no member could take a message of '{Channel}' (none connected, none persistent at QoS 1/2)")]
    private static partial void LogNoMember(ILogger logger, string app, string group, string filter, string channel);

    [LoggerMessage(EventId = 1461, Level = LogLevel.Warning, Message = "MQTT shared subscription $share/{Group}/{Filter} of app {App}: messages were lost before this node and history no longer holds them; delivery goes on")]
    private static partial void LogLost(ILogger logger, string app, string group, string filter);

    [LoggerMessage(EventId = 1462, Level = LogLevel.Warning, Message = "MQTT shared subscription $share/{Group}/{Filter} of app {App}: the bus did not say which node delivers {Count} messages; they are delivered here, so a member on another node may get them too")]
    private static partial void LogTakeFailed(ILogger logger, Exception exception, string app, string group, string filter, int count);

    [LoggerMessage(EventId = 1463, Level = LogLevel.Warning, Message = "MQTT shared subscription $share/{Group}/{Filter} of app {App}: {Max} messages or {MaxBytes} bytes (Relay:Ingress:SendQueueBytes) wait for the bus to say which node delivers them; until it takes them again, messages are delivered here without asking (a member on another node may get them too)")]
    private static partial void LogWaitingFull(ILogger logger, string app, string group, string filter, int max, long maxBytes);
}
