using System.Buffers;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text.Unicode;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Ingress.Sending;
using Relay.Ingress.Subscriptions;
using Relay.Ingress.WebSockets;

namespace Relay.Ingress.Realtime;

/// <summary>
/// One WebSocket client, whichever way it came in (Relay's own transport or ASP.NET Core's WebSocket). A receive loop
/// parses and runs requests one at a time (so replies keep request order); every frame out goes through the
/// connection's <see cref="IFrameSender"/>, which also holds the send budget's count, the flush policy and the
/// once-a-second sweep of its buffers. A message frame is encoded once and the same bytes are sent to every subscriber.
/// </summary>
internal sealed partial class RealtimeConnection : IMessageSink, INodeConnection
{
    /// <summary>Room for the JSON around a payload: a frame may exceed MaxMessageBytes by this much.</summary>
    private const int FrameOverheadBytes = 16 * 1024;

    private const int InitialReceiveBytes = 4096;

    /// <summary>Publishes one connection may have waiting for routing's answer over a networked bus.</summary>
    private const int MaxPipelinedPublishes = 64;

    private readonly WebSocket _socket;
    private readonly IFrameSender _sender;

    // Relay's own socket, which lets the receive loop wait on the socket itself (an idle connection then holds no
    // receive state machine) and see the control frames it answered; null on ASP.NET Core's WebSocket.
    private readonly PipeWebSocket? _ownSocket;
    private readonly IngressNode _node;
    private readonly IRelayAuthenticator _authenticator;
    private readonly ILogger _logger;
    private SubscriptionList _subscriptions;
    private HashSet<string>? _presence;
    private readonly TokenBucket _publishRate;
    private readonly TokenBucket _readRate;

    /// <summary>When the input being handled arrived (<see cref="TimeProvider.GetTimestamp"/>): what the rate buckets take at.</summary>
    private long _inputTimestamp;

    /// <summary>
    /// Messages of one burst of input that may share a reading of the clock: at 300,000 publishes a second it is read
    /// every ~50 µs at most, not four times per publish (3.7% of the server's CPU in <c>publish-ws-1</c>).
    /// </summary>
    private const int InputClockReuse = 16;
    private volatile RelayPrincipal _principal;
    private readonly RepeatFilter _repeats = new();
    private int _closing;
    private long _closeDeadlineTicks = long.MaxValue;

    /// <param name="socket">The accepted WebSocket; its owner (the way in) disposes it once <see cref="RunAsync"/> ends.</param>
    /// <param name="sender">How frames leave on that socket.</param>
    public RealtimeConnection(WebSocket socket, IFrameSender sender, RelayPrincipal principal, IngressNode node, IRelayAuthenticator authenticator, ILogger logger)
    {
        _socket = socket;
        _sender = sender;
        _ownSocket = socket as PipeWebSocket;
        _principal = principal;
        _node = node;
        _authenticator = authenticator;
        _logger = logger;
        _inputTimestamp = node.Time.GetTimestamp();
        _publishRate = new TokenBucket(node.Options.PublishRatePerSecond, node.Options.PublishBurst == 0 ? node.Options.PublishRatePerSecond * 2 : node.Options.PublishBurst, _inputTimestamp);
        _readRate = NewReadBucket(node);
        ConnectionId = "c-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
    }

    public string ConnectionId { get; }

    private string App => _principal.AppId;

    /// <summary>Serves the connection until it ends; one async frame for its whole life (the receive loop).</summary>
    public Task RunAsync()
    {
        _node.Register(this);
        Enqueue(ConnectedFrame());
        return ReceiveLoopAsync();
    }

    /// <summary>After the receive loop: unsubscribe, leave presence, drain what is queued and close.</summary>
    private async Task CloseAsync()
    {
        try
        {
            foreach (var subscription in UntrackAllSubscriptions())
            {
                await _node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
            }

            await LeaveAllPresenceAsync().ConfigureAwait(false);
            try
            {
                await _sender.DrainAsync().WaitAsync(_node.Options.CloseTimeout).ConfigureAwait(false);
                if (_socket.State == WebSocketState.CloseReceived)
                {
                    // The client closed first: answer its close so it sees a clean shutdown.
                    await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None).WaitAsync(_node.Options.CloseTimeout).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is TimeoutException or WebSocketException or ObjectDisposedException)
            {
                Abort();
            }
        }
        finally
        {
            _node.Unregister(this);
            _sender.Discard();
        }
    }

    /// <inheritdoc />
    public void Send(RelayMessage message) => Enqueue(ServerFrames.PushFrame(message));

    /// <inheritdoc />
    public void SendLive(RelayMessage message)
    {
        // A connection subscribed to a channel and to a pattern matching it gets the message once.
        if (!_repeats.IsRepeat(message))
        {
            Enqueue(ServerFrames.PushFrame(message));
        }
    }

    /// <inheritdoc />
    public void PatternAdded() => _repeats.PatternAdded();

    /// <inheritdoc />
    public void Lost(Subscription subscription) =>
        Disconnect(new RelayError(ErrorCodes.Unavailable, $"messages of '{subscription.Channel}' were lost before reaching this node and history no longer holds them: reconnect and subscribe with 'since' (the reply says recovered: false)"), reconnect: true, dropQueued: false);

    /// <inheritdoc />
    public void Drain(RelayError error) => Disconnect(error, reconnect: true, dropQueued: false);

    public void Abort()
    {
        try
        {
            _socket.Abort();
        }
        catch (ObjectDisposedException)
        {
            // Already gone.
        }
    }

    /// <summary>Called once a second by the node: token expiry and close deadlines, without a timer per connection.</summary>
    public void CheckDeadlines(DateTimeOffset now)
    {
        if (now.UtcTicks >= Interlocked.Read(ref _closeDeadlineTicks))
        {
            Abort();
            return;
        }

        _sender.Sweep();

        if (_principal.ExpiresAt is { } expiresAt && now >= expiresAt + _node.TokenGrace)
        {
            Disconnect(new RelayError(ErrorCodes.TokenExpired, "token expired: reconnect with a new token, or send {\"type\":\"auth\",\"token\":…} before expiry"), reconnect: true, dropQueued: false);
        }
    }

    /// <summary>
    /// Queues one frame for this client. Everything it has not yet been sent counts against one budget in bytes
    /// (<c>SendQueueBytes</c>, kept by the sender): a frame that would pass it cuts the connection as a slow consumer
    /// (50301), so no client, however it reads, makes the node hold more than that for it. When the bytes leave is the
    /// sender's flush policy: on Relay's own socket a frame queued while another connection's requests are handled on
    /// this thread (a publisher's burst) leaves when that burst ends, before that connection waits for anything, after
    /// at most <see cref="DeliveryBatch.MaxWork"/> units of its work, and before it has spent
    /// <see cref="DeliveryBatch.MaxDelay"/> on its input (the rule is on <see cref="DeliveryBatch"/>); otherwise at once.
    /// </summary>
    private void Enqueue(ReadOnlyMemory<byte> frame)
    {
        if (!_sender.TrySend(frame) && Volatile.Read(ref _closing) == 0)
        {
            var budget = _node.Options.SendQueueBytes;
            LogSlowConsumer(_logger, ConnectionId, budget);
            _node.CountSlowConsumer();
            Disconnect(new RelayError(ErrorCodes.SlowConsumer, $"disconnected as a slow consumer: more than {budget} bytes waited to be sent; reconnect and resume with 'since'"), reconnect: true, dropQueued: true);
        }
    }

    /// <summary>Sends a final <c>disconnect</c> and closes. Queued frames go first unless the client is too slow for them.</summary>
    private void Disconnect(RelayError error, bool reconnect, bool dropQueued)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }

        Interlocked.Exchange(ref _closeDeadlineTicks, (_node.Time.GetUtcNow() + _node.Options.CloseTimeout).UtcTicks);
        using var frame = new FrameBuilder();
        ServerFrames.WriteDisconnect(frame.Writer, error, reconnect);
        _sender.SendLast(frame.ToArray(), dropQueued);
    }

    private byte[] ConnectedFrame()
    {
        using var frame = new FrameBuilder();
        var writer = frame.Writer;
        writer.WriteStartObject();
        writer.WriteString("type"u8, "connected");
        writer.WriteString("connectionId"u8, ConnectionId);
        if (_principal.ClientId is { } clientId)
        {
            writer.WriteString("clientId"u8, clientId);
        }

        writer.WriteNumber("heartbeatMs"u8, _node.Options.HeartbeatMs);
        writer.WriteNumber("maxMessageBytes"u8, _node.Options.MaxMessageBytes);
        writer.WriteEndObject();
        return frame.ToArray();
    }

    private async Task ReceiveLoopAsync()
    {
        var maxFrame = _node.Options.MaxMessageBytes + FrameOverheadBytes;
        var requests = new List<ClientRequest>();
        Queue<Task>? publishing = null;
        var batch = new DeliveryBatch(_node.Time);
        var controlFramesSeen = 0L;
        var messagesSinceClock = 0;

        // What this connection's requests delivered to others goes out before it waits for anything (its input, a
        // request that went asynchronous), and whenever the batch's bounds say so (DeliveryBatch: work, counting the
        // control frames the socket answered on its own, and time spent on input): others never wait on this
        // client's input.
        void SubmitBeforeWaiting(bool continuesAtOnce)
        {
            if (_ownSocket is not null)
            {
                var controlFrames = _ownSocket.ControlFramesReceived;
                batch.CountControlFrames(controlFrames - controlFramesSeen);
                controlFramesSeen = controlFrames;
            }

            if (!continuesAtOnce || batch.IsDue)
            {
                batch.Submit();
            }
        }

        try
        {
            while (_socket.State == WebSocketState.Open)
            {
                // A whole message already in the socket's buffer (a burst's publishes) is taken in one step.
                byte[]? message = null;
                var length = 0;

                // A zero-byte read waits for data without holding a buffer, so idle connections cost no buffer.
                if (_ownSocket is not null)
                {
                    // Wait on the socket itself: an idle connection then holds no receive state machine at all.
                    var input = _ownSocket.WaitForInputAsync();
                    var waited = !input.IsCompleted;
                    SubmitBeforeWaiting(input.IsCompleted);
                    var read = await input.ConfigureAwait(false);

                    // The messages of one burst of input share a reading of the clock (rates, the heartbeat's "last
                    // heard"), read again after every wait and every InputClockReuse messages.
                    if (waited || ++messagesSinceClock >= InputClockReuse)
                    {
                        _inputTimestamp = _node.Time.GetTimestamp();
                        messagesSinceClock = 0;
                    }

                    if (!_ownSocket.TryTakeMessage(read, maxFrame, _inputTimestamp, out message, out length, out var text))
                    {
                        message = null;
                        _ownSocket.ReleaseInput(read);
                    }
                    else if (text && !Utf8.IsValid(message.AsSpan(0, length)))
                    {
                        ArrayPool<byte>.Shared.Return(message);
                        throw _ownSocket.FailInvalidText();
                    }
                }

                if (message is not null)
                {
                    try
                    {
                        if (Volatile.Read(ref _closing) != 0)
                        {
                            return;
                        }

                        if (!Parse(message.AsSpan(0, length), requests))
                        {
                            continue;
                        }
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(message);
                    }
                }
                else
                {
                    // No cancellation token: a registration per idle connection costs memory, and stopping aborts every connection.
                    var waiting = _socket.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None);
                    SubmitBeforeWaiting(waiting.IsCompleted);

                    var peek = await waiting.ConfigureAwait(false);
                    if (peek.MessageType == WebSocketMessageType.Close)
                    {
                        return;
                    }

                    _inputTimestamp = _node.Time.GetTimestamp();

                    var buffer = ArrayPool<byte>.Shared.Rent(InitialReceiveBytes);
                    try
                    {
                        var count = 0;
                        var tooLarge = false;
                        var end = peek.EndOfMessage;
                        while (!end)
                        {
                            // The pool may hand out more than asked for; the frame limit is what counts.
                            if (count == Math.Min(buffer.Length, maxFrame))
                            {
                                if (count >= maxFrame)
                                {
                                    // Keep reading to the end of the oversized frame, discarding it, then answer 41300.
                                    tooLarge = true;
                                    count = 0;
                                }
                                else
                                {
                                    var larger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, maxFrame));
                                    buffer.AsSpan(0, count).CopyTo(larger);
                                    ArrayPool<byte>.Shared.Return(buffer);
                                    buffer = larger;
                                }
                            }

                            var receiving = _socket.ReceiveAsync(buffer.AsMemory(count, Math.Min(buffer.Length, maxFrame) - count), CancellationToken.None);
                            SubmitBeforeWaiting(receiving.IsCompleted);

                            var result = await receiving.ConfigureAwait(false);
                            if (result.MessageType == WebSocketMessageType.Close)
                            {
                                return;
                            }

                            count += result.Count;
                            end = result.EndOfMessage;
                        }

                        if (Volatile.Read(ref _closing) != 0)
                        {
                            return;
                        }

                        if (tooLarge)
                        {
                            ReplyError(null, new RelayError(ErrorCodes.MessageTooLarge, $"frame larger than {maxFrame} bytes (maxMessageBytes {_node.Options.MaxMessageBytes} plus framing)"));
                            continue;
                        }

                        // ASP.NET Core's WebSocket checks text itself; Relay's checks the whole message here.
                        if (_ownSocket is not null && peek.MessageType == WebSocketMessageType.Text && !Utf8.IsValid(buffer.AsSpan(0, count)))
                        {
                            throw _ownSocket.FailInvalidText();
                        }

                        if (!Parse(buffer.AsSpan(0, count), requests))
                        {
                            continue;
                        }
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }
                }

                foreach (var request in requests)
                {
                    // Anything but a publish waits for the publishes before it, as if they had been handled one by one.
                    if (request.Type != RequestType.Publish && publishing is { Count: > 0 })
                    {
                        SubmitBeforeWaiting(continuesAtOnce: false);
                        await DrainAsync(publishing, 0).ConfigureAwait(false);
                    }

                    ValueTask handling;
                    batch.Enter();
                    try
                    {
                        handling = HandleAsync(request);
                    }
                    finally
                    {
                        DeliveryBatch.Leave();
                    }

                    batch.CountRequest();
                    if (!handling.IsCompleted && request.Type == RequestType.Publish)
                    {
                        // A publish that went out over a networked bus: its request is already on the wire, in order, so
                        // the next one can follow without waiting for this one's answer (its reply is sent when it comes).
                        (publishing ??= new Queue<Task>()).Enqueue(handling.AsTask());
                        await DrainAsync(publishing, MaxPipelinedPublishes - 1).ConfigureAwait(false);
                        continue;
                    }

                    SubmitBeforeWaiting(handling.IsCompleted);

                    await handling.ConfigureAwait(false);
                }

                // Let the handled requests (and their payloads) go while the connection waits.
                requests.Clear();
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException or IOException)
        {
            LogReceiveEnded(_logger, ConnectionId, ex.Message);
        }
        finally
        {
            batch.Submit();
            if (publishing is not null)
            {
                await DrainAsync(publishing, 0).ConfigureAwait(false);
            }

            await CloseAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Parses one frame's requests into <paramref name="requests"/>; a frame that is not valid gets its error reply, and false.</summary>
    private bool Parse(ReadOnlySpan<byte> frame, List<ClientRequest> requests)
    {
        requests.Clear();
        var frameError = ClientFrameParser.Parse(frame, requests);
        if (frameError is not null)
        {
            ReplyError(null, frameError);
            return false;
        }

        return true;
    }

    // Waits for the oldest publishes in flight until at most `keep` remain. A publish answers for itself (ok or error);
    // one cut short by stopping has nothing left to say.
    private static async ValueTask DrainAsync(Queue<Task> publishing, int keep)
    {
        while (publishing.Count > keep)
        {
            try
            {
                await publishing.Dequeue().ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Stopping.
            }
        }
    }

    [LoggerMessage(EventId = 1100, Level = LogLevel.Information, Message = "Connection {ConnectionId} cut as a slow consumer (its {Bytes}-byte send budget was spent)")]
    private static partial void LogSlowConsumer(ILogger logger, string connectionId, long bytes);

    [LoggerMessage(EventId = 1101, Level = LogLevel.Debug, Message = "Connection {ConnectionId} receive ended: {Reason}")]
    private static partial void LogReceiveEnded(ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Error, Message = "Connection {ConnectionId} request failed")]
    private static partial void LogRequestFailed(ILogger logger, Exception exception, string connectionId);
}
