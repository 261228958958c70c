using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>
/// One connection's subscription to a channel or pattern. A new channel subscription starts buffering: live
/// messages are held while the catch-up (position or history) is read, then flushed past the last seq sent,
/// so there is no gap and no duplicate at the seam. It locks itself (a monitor costs no extra object per subscription).
/// </summary>
/// <param name="heldUntilLive">
/// A pattern that is given messages dispatched before it was added (<see cref="GoLive(List{RelayMessage}?)"/>) buffers
/// until then, so those go first; any other pattern is live at once.
/// </param>
internal sealed class Subscription(IMessageSink sink, string app, string channel, bool isPattern, bool heldUntilLive = false)
{
    private List<RelayMessage>? _buffer = Registered(sink, isPattern) && !heldUntilLive ? null : [];
    private volatile bool _live = isPattern && !heldUntilLive;
    private string? _epoch;
    private long _lastSeq;

    // A loss reported while buffering (epoch, last lost seq): judged once the subscription knows where it starts. A
    // reference, not a nullable tuple in place (24 B in every subscription for a rare case).
    private LostWhileBuffering? _lostWhileBuffering;

    public IMessageSink Sink { get; } = sink;

    public string App { get; } = app;

    public string Channel { get; } = channel;

    public bool IsPattern { get; } = isPattern;

    /// <summary>Where this subscription sits in its channel's <see cref="SubscriberList"/> (kept by the list).</summary>
    internal int Slot { get; set; }

    // 1 while the subscription counts against its app's subscriptions (Limits/AppLimits): uncounted once, however often removed.
    private int _countedForApp;

    /// <summary>Marks the subscription as counted against its app.</summary>
    internal void CountForApp() => Volatile.Write(ref _countedForApp, 1);

    /// <summary>True once, for a subscription counted against its app: the caller takes it off the count.</summary>
    internal bool UncountForApp() => Interlocked.Exchange(ref _countedForApp, 0) == 1;

    /// <summary>Delivers a live message. Calls for one channel arrive in seq order.</summary>
    public void Deliver(RelayMessage message)
    {
        if (!_live)
        {
            lock (this)
            {
                if (!_live)
                {
                    _buffer!.Add(message);
                    return;
                }
            }
        }

        if (!IsPattern && message.PresenceAction is null)
        {
            if (ReferenceEquals(_epoch, message.Epoch) || string.Equals(_epoch, message.Epoch, StringComparison.Ordinal))
            {
                if (message.Seq <= _lastSeq)
                {
                    return;
                }
            }
            else
            {
                _epoch = message.Epoch;
            }

            _lastSeq = message.Seq;
        }

        Sink.SendLive(message);
    }

    /// <summary>
    /// Messages dispatched before this channel subscription was added that it is to have all the same (its request
    /// arrived before them: <see cref="RecentDispatches"/>), while it buffers: they go before what it buffered, in seq
    /// order, and a message both taken here and delivered meanwhile goes out once (going live passes each seq once).
    /// </summary>
    public void TakeEarlier(List<RelayMessage> earlier)
    {
        lock (this)
        {
            if (_live)
            {
                return;
            }

            _buffer!.InsertRange(0, earlier);
            var epoch = _buffer[0].Epoch;
            if (_buffer.TrueForAll(message => string.Equals(message.Epoch, epoch, StringComparison.Ordinal)))
            {
                // One epoch: an equal seq is the same message, side by side after sorting.
                _buffer.Sort(static (a, b) => a.Seq.CompareTo(b.Seq));
            }
        }
    }

    /// <summary>
    /// A pattern held until live: <paramref name="earlier"/> (dispatched before it was added, in dispatch order) goes
    /// first, then what it buffered; its connection sends each channel's seq once (an MQTT session drops a copy).
    /// </summary>
    public void GoLive(List<RelayMessage>? earlier)
    {
        lock (this)
        {
            if (_live)
            {
                return;
            }

            foreach (var message in earlier ?? [])
            {
                Sink.SendLive(message);
            }

            _live = true;
            if (_lostWhileBuffering is not null)
            {
                Sink.Lost(this);
                _lostWhileBuffering = null;
            }

            foreach (var message in _buffer!)
            {
                Sink.SendLive(message);
            }

            _buffer = null;
        }
    }

    // A pattern subscription tells its connection first (its deliveries may overlap the connection's others); a pattern
    // has no buffer.
    private static bool Registered(IMessageSink sink, bool isPattern)
    {
        if (isPattern)
        {
            sink.PatternAdded();
        }

        return isPattern;
    }

    /// <summary>
    /// The node could not deliver the channel's messages up to <paramref name="upTo"/> in <paramref name="epoch"/>, and
    /// history no longer holds them. Called in order with <see cref="Deliver"/>, before the first message after the
    /// loss: a subscription that had not passed them yet tells its connection (<see cref="IMessageSink.Lost"/>), so the
    /// client never sees the seq jump without being told. A pattern subscription cannot recover; it is told too.
    /// </summary>
    public void Lost(string epoch, long upTo)
    {
        lock (this)
        {
            if (!_live)
            {
                _lostWhileBuffering = _lostWhileBuffering is { } earlier && earlier.Epoch == epoch ? new(epoch, Math.Max(earlier.UpTo, upTo)) : new(epoch, upTo);
                return;
            }

            if (IsPattern || (_epoch == epoch && _lastSeq < upTo))
            {
                Sink.Lost(this);
            }
        }
    }

    // The seq before the first buffered message of the epoch, when that is at or below the position (no lambda: every
    // subscription goes live through here).
    private long FirstBufferedBefore(string epoch, long lastSeq)
    {
        foreach (var message in _buffer!)
        {
            if (message.Epoch == epoch)
            {
                return Math.Min(lastSeq, message.Seq - 1);
            }
        }

        return lastSeq;
    }

    /// <summary>
    /// Ends buffering: <paramref name="before"/> runs first (it queues the reply and the recovered messages, whose
    /// last seq is <paramref name="lastSeq"/> in <paramref name="epoch"/>), then buffered messages after that follow.
    /// With <paramref name="fromRegistration"/> (nothing recovered), every buffered message of that epoch follows, those
    /// routing sequenced before it answered the position too: each reached this node after the subscription was.
    /// <paramref name="before"/> is given the seq after which the subscription's messages follow: below
    /// <paramref name="lastSeq"/> when buffered messages at or below it follow (a session that records what it was
    /// given must not count those as given already).
    /// </summary>
    public void GoLive(string epoch, long lastSeq, Action<long> before, bool fromRegistration = false)
    {
        lock (this)
        {
            if (fromRegistration)
            {
                lastSeq = FirstBufferedBefore(epoch, lastSeq);
            }

            before(lastSeq);
            _epoch = epoch;
            _lastSeq = lastSeq;
            _live = true;
            if (_lostWhileBuffering is { } lost && lost.Epoch == epoch && lastSeq < lost.UpTo)
            {
                // The buffered messages after the position would jump over the loss.
                Sink.Lost(this);
            }

            _lostWhileBuffering = null;
            foreach (var message in _buffer!)
            {
                Deliver(message);
            }

            _buffer = null;
        }
    }

    private sealed record LostWhileBuffering(string Epoch, long UpTo);
}
