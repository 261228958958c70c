using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>
/// One connection's subscription to a channel or pattern. A new channel subscription starts buffering: live
/// messages are held while the catch-up (position or history) is read, then flushed past the last seq sent,
/// so there is no gap and no duplicate at the seam. It locks itself (a monitor costs no extra object per subscription).
/// </summary>
internal sealed class Subscription(IMessageSink sink, string app, string channel, bool isPattern)
{
    private List<RelayMessage>? _buffer = isPattern ? null : [];
    private volatile bool _live = isPattern;
    private string? _epoch;
    private long _lastSeq;

    public IMessageSink Sink { get; } = sink;

    public string App { get; } = app;

    public string Channel { get; } = channel;

    public bool IsPattern { get; } = isPattern;

    /// <summary>Where this subscription sits in its channel's <see cref="SubscriberList"/> (kept by the list).</summary>
    internal int Slot { get; set; }

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

        Sink.Send(message);
    }

    /// <summary>
    /// Ends buffering: <paramref name="before"/> runs first (it queues the reply and the recovered messages, whose
    /// last seq is <paramref name="lastSeq"/> in <paramref name="epoch"/>), then buffered messages after that follow.
    /// </summary>
    public void GoLive(string epoch, long lastSeq, Action before)
    {
        lock (this)
        {
            before();
            _epoch = epoch;
            _lastSeq = lastSeq;
            _live = true;
            foreach (var message in _buffer!)
            {
                Deliver(message);
            }

            _buffer = null;
        }
    }
}
