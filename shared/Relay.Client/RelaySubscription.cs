using System.Text.Json;
using System.Threading.Channels;

namespace Relay.Client;

/// <summary>
/// A subscription to a channel or an MQTT-style pattern (<c>+</c> one level, <c>#</c> the rest). Survives reconnections:
/// the client subscribes again, and for a channel resumes from <see cref="Epoch"/>/<see cref="LastSeq"/> so missed
/// messages are delivered exactly once, in order (duplicates are dropped by seq).
/// </summary>
/// <remarks>
/// Messages go to the handler given to <see cref="RelayClient.SubscribeAsync(string, Action{RelayMessage}?, CancellationToken)"/>
/// (on the client's receive loop: keep it short, and do not block on requests from it) and to a bounded buffer read by
/// <see cref="ReadAllAsync"/>. When the buffer is full the oldest buffered message is dropped and counted in
/// <see cref="DroppedMessages"/>, so a reader that falls behind never stalls the connection or the other subscriptions.
/// </remarks>
public sealed class RelaySubscription
{
    private readonly RelayClient _client;
    private readonly Action<RelayMessage>? _handler;
    private readonly Channel<RelayMessage> _buffer;
    private readonly Lock _gate = new();
    private string? _epoch;
    private long _lastSeq;
    private long _lastDeliveredSeq;
    private long _dropped;
    private bool _recovered;

    internal RelaySubscription(RelayClient client, string channel, Action<RelayMessage>? handler, int capacity)
    {
        _client = client;
        _handler = handler;
        Channel = channel;
        IsPattern = Topics.IsPattern(channel);
        _buffer = System.Threading.Channels.Channel.CreateBounded<RelayMessage>(
            new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.DropOldest, SingleWriter = true },
            _ => Interlocked.Increment(ref _dropped));
    }

    /// <summary>Raised after the subscription was re-established on a new connection; tells whether missed messages were recovered.</summary>
    public event EventHandler<RelaySubscriptionResumedEventArgs>? Resumed;

    /// <summary>The channel name or pattern subscribed to.</summary>
    public string Channel { get; }

    /// <summary>Whether <see cref="Channel"/> is a pattern (live messages only: no resume, no recovery).</summary>
    public bool IsPattern { get; }

    /// <summary>The channel's epoch, from the subscribe reply or the latest message (<c>null</c> for a pattern).</summary>
    public string? Epoch
    {
        get
        {
            lock (_gate)
            {
                return _epoch;
            }
        }
    }

    /// <summary>The seq this subscription would resume after: the last message delivered, or the channel's seq when subscribed if later.</summary>
    public long LastSeq
    {
        get
        {
            lock (_gate)
            {
                return _lastSeq;
            }
        }
    }

    /// <summary>
    /// Whether the last re-subscription recovered every missed message (the server's <c>recovered</c>); <c>false</c> until
    /// the first reconnection. See <see cref="Resumed"/>.
    /// </summary>
    public bool Recovered
    {
        get
        {
            lock (_gate)
            {
                return _recovered;
            }
        }
    }

    /// <summary>Messages dropped from the <see cref="ReadAllAsync"/> buffer because it was full.</summary>
    public long DroppedMessages => Interlocked.Read(ref _dropped);

    internal bool IsActive { get; private set; }

    /// <summary>
    /// Reads the subscription's messages as they arrive, in order. Ends when the subscription is removed or the client is
    /// disposed, and throws <see cref="RelayClientException"/> when the server ended it (e.g. the credentials were refused on reconnection).
    /// </summary>
    /// <param name="cancellationToken">Stops the enumeration.</param>
    /// <returns>The messages.</returns>
    public IAsyncEnumerable<RelayMessage> ReadAllAsync(CancellationToken cancellationToken = default) => _buffer.Reader.ReadAllAsync(cancellationToken);

    /// <summary>Unsubscribes: no more messages are delivered, and <see cref="ReadAllAsync"/> ends after what is buffered.</summary>
    /// <param name="cancellationToken">Cancels waiting for the server's reply.</param>
    /// <returns>A task that completes when the server confirmed (or at once when disconnected: a new connection will not subscribe again).</returns>
    public Task UnsubscribeAsync(CancellationToken cancellationToken = default) => _client.UnsubscribeAsync(this, cancellationToken);

    /// <summary>The <c>since</c> to resume with, or <c>null</c> (patterns, or nothing known yet).</summary>
    internal (string Epoch, long Seq)? ResumePosition()
    {
        lock (_gate)
        {
            return IsPattern || _epoch is null ? null : (_epoch, _lastSeq);
        }
    }

    /// <summary>The first <c>ok</c> to subscribe. Runs on the receive loop, in order with messages.</summary>
    internal void OnSubscribed(JsonElement ok)
    {
        lock (_gate)
        {
            IsActive = true;
            if (IsPattern)
            {
                return;
            }

            var epoch = ReadString(ok, "epoch");
            var seq = ReadInt64(ok, "seq");
            if (_epoch is null)
            {
                // No message yet: resume from the channel's position at subscribe time.
                _epoch = epoch;
                _lastSeq = seq;
            }
            else if (_epoch == epoch)
            {
                _lastSeq = Math.Max(_lastSeq, seq);
            }
        }
    }

    /// <summary>The <c>ok</c> to a re-subscription on a new connection. Runs on the receive loop, in order with messages.</summary>
    internal void OnResubscribed(JsonElement ok)
    {
        var recovered = ok.TryGetProperty("recovered", out var r) && r.ValueKind == JsonValueKind.True;
        var epoch = ReadString(ok, "epoch");
        var seq = ReadInt64(ok, "seq");
        lock (_gate)
        {
            _recovered = recovered;
            if (!IsPattern && !recovered)
            {
                if (_epoch != epoch)
                {
                    // History was lost: a new sequence starts, live from the channel's current position.
                    _epoch = epoch;
                    _lastDeliveredSeq = 0;
                    _lastSeq = seq;
                }
                else
                {
                    // Outside the window: whatever follows is live, after the channel's current position.
                    _lastSeq = Math.Max(_lastSeq, seq);
                }
            }
        }

        Resumed?.Invoke(this, new RelaySubscriptionResumedEventArgs(recovered, epoch, seq));
    }

    /// <summary>Delivers a message unless it is a duplicate (same epoch, seq already delivered). Runs on the receive loop.</summary>
    internal void Deliver(RelayMessage message)
    {
        if (!IsPattern)
        {
            lock (_gate)
            {
                if (message.Epoch == _epoch && message.Seq <= _lastDeliveredSeq)
                {
                    return;
                }

                if (message.Epoch != _epoch)
                {
                    _epoch = message.Epoch;
                }

                _lastDeliveredSeq = message.Seq;
                _lastSeq = message.Seq;
            }
        }

        _buffer.Writer.TryWrite(message);
        if (_handler is not null)
        {
            try
            {
                _handler(message);
            }
#pragma warning disable CA1031 // A failing handler must not stop delivery to every other subscription on the connection.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }
    }

    /// <summary>Ends <see cref="ReadAllAsync"/>: normally, or with the server's reason.</summary>
    internal void Complete(Exception? error = null) => _buffer.Writer.TryComplete(error);

    private static string? ReadString(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static long ReadInt64(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number) ? number : 0;
}
