using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;
using Relay.Core.Messages;
using Relay.Ingress.Connections;
using Relay.Ingress.Mqtt.Codec;
using Relay.Ingress.Realtime;
using Relay.Ingress.Sending;
using Relay.Ingress.WebSockets;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// One MQTT client, over TCP or WebSocket alike (an <see cref="IDuplexPipe"/>): a read loop decodes packets and handles
/// them in order (publishes pipelined to routing as a realtime connection's are, so acknowledgements keep their order);
/// a write loop sends what is queued, control packets and deliveries alike, with one bounded send budget, and holds
/// QoS 1 deliveries back while the client's in-flight window is full. The write loop runs only while it has something
/// to write (started by the queue: <see cref="SendQueue{T}.ContinueOrStop"/>), so an idle connection holds no frame for it. The node's once-a-second loop checks the CONNECT
/// timeout, keep-alive, token expiry and key changes.
/// </summary>
internal sealed partial class MqttConnection : INodeConnection, ISendQueueReader, IThreadPoolWorkItem
{
    /// <summary>Bytes written to the transport between two flushes, so one flush carries a burst of deliveries.</summary>
    private const int FlushBytes = 64 * 1024;

    /// <summary>Publishes one connection may have waiting for routing's answer (as a realtime connection may).</summary>
    private const int MaxPipelinedPublishes = 64;

    private readonly IDuplexPipe _transport;
    private readonly Action? _abort;
    private readonly MqttBroker _broker;
    private readonly SendQueue<MqttOutbound> _queue;

    // How the write loop ended, once it has (WriterDone, or the exception it failed with), or the wait EndAsync set up
    // for it: the loop runs on demand, so there is no one task of it to await.
    private object? _writerEnd;
    private static readonly object WriterDone = new();

    // A bare-socket read loop that left its read waiting resumes here, in a new frame, once the read completes.
    private static readonly Action<object?> s_resumeRead = static connection => _ = ((MqttConnection)connection!).ReadLoopAsync(resumed: true);

    // What only QoS 1 and 2, MQTT 5's aliases and identifiers, a will or a publisher need, made on first use (Side): an
    // idle QoS 0 subscriber, most of a node's connections, holds none of it (104 B of fields).
    private SideState? _side;

    // MQTT 5 flow control the other way: QoS 1 and 2 publishes from the client not yet acknowledged (PUBACK, PUBREC),
    // which with those awaiting PUBREL may not pass CONNACK's Receive Maximum (MQTT 5 §4.9).
    private int _receivedUnacknowledged;

    // The in-flight window: deliveries awaiting the client, taken by the write loop only, freed by acknowledgements,
    // each of which wakes the write loop (as does a PUBREL to send).
    private int _window = int.MaxValue;
    private int _inflightCount;
    private volatile RelayPrincipal? _principal;
    private byte _level;
    private string? _clientId;

    // This connection's claim of its client id across nodes (0 until it comes back), the latest claim another node made
    // and whether that one ends the session (a clean start) rather than resuming it. Changed under lock (this) (a Lock
    // object would cost 40 B per connection; nothing else locks a connection).
    private long _claim;
    private long _claimedElsewhere;
    private bool _endedElsewhere;
    private bool _movedAway;
    private ushort _keepAliveSeconds;
    private long _lastInputTicks;
    private readonly long _connectDeadlineTicks;
    private long _closeDeadlineTicks = long.MaxValue;
    private int _closing;
    private bool _disconnectedCleanly;

    // MQTT 5 §3.1.2.11.7: a client that sets Request Problem Information to 0 gets no reason string on acknowledgements.
    private bool _reasonStrings = true;
    private long _clientMaxPacket = long.MaxValue;
    private int _nextPacketId;

    // Topic aliases Relay may send (MQTT 5: the lower of the client's Topic Alias Maximum and Relay:Mqtt:MaxServerTopicAliases;
    // 0: none); the topics given one are SideState.SentAliases.
    private ushort _aliasesToSend;

    // The client id's session: its subscriptions, and what it keeps while no connection holds it.
    private MqttSession? _session;
    private long _keysVersion = -1;
    private readonly string? _refusedAtAccept;

    // The app this connection counts against (AppLimits), once CONNECT was accepted.
    private string? _countedApp;

    /// <summary>Whether the client connects from a loopback address (for <c>Relay:Mqtt:Anonymous:LoopbackOnly</c>).</summary>
    public bool FromLoopback { get; init; }

    /// <summary>
    /// On the bare socket, who ends the connection once the read loop has (the listener: socket finished, gate left),
    /// called from the read loop's frame so that no frame of the listener's waits on each connection; null otherwise.
    /// </summary>
    public IBareConnectionOwner? Owner { get; init; }

    /// <summary>The address the listener's gate counted this connection against (with <see cref="Owner"/>).</summary>
    public System.Net.IPAddress? GateAddress { get; init; }

    /// <param name="transport">The client's bytes, both ways.</param>
    /// <param name="abort">Ends the connection at once (null for a <see cref="BareSocketTransport"/>: its own, without a delegate per connection).</param>
    /// <param name="broker">The node's MQTT broker.</param>
    /// <param name="gate">A lock to share with the send queue (the bare socket's send gate, saving one per connection), or null.</param>
    public MqttConnection(IDuplexPipe transport, Action? abort, MqttBroker broker, Lock? gate = null)
    {
        _transport = transport;
        _abort = abort;
        _broker = broker;
        _queue = new SendQueue<MqttOutbound>(MqttOutbound.Size, gate, Node.Metrics, reader: this);
        var now = Node.Time.GetUtcNow().UtcTicks;
        _lastInputTicks = now;
        _connectDeadlineTicks = now + Settings.ConnectTimeout.Ticks;
        ConnectionId = "m-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
    }

    public string ConnectionId { get; }

    // The node, options and logger are the broker's: reached through it, not held per connection (24 B each connection).
    private IngressNode Node => _broker.Node;

    private MqttOptions Settings => _broker.Options;

    private ILogger Logger => _broker.Logger;

    /// <summary>
    /// Why the listener refused this connection (the node's cap or its address's limit), or null: CONNECT is answered with CONNACK 0x97
    /// (MQTT 5) or 0x03 (3.1.1), and a client that sends none is closed within a second or two, not the connect timeout.
    /// </summary>
    public string? RefusedAtAccept
    {
        get => _refusedAtAccept;
        init
        {
            _refusedAtAccept = value;
            if (value is not null)
            {
                _connectDeadlineTicks = _lastInputTicks + ConnectionGate.RefusalWait.Ticks;
            }
        }
    }

    private string App => _principal!.AppId;

    private bool V5 => _level == 5;

    /// <summary>
    /// Whether Relay ended the connection with an MQTT 5 DISCONNECT: its client closes once it has read it, so on a
    /// transport that cannot half-close (Kestrel's) the input is read away until then (<see cref="DrainAsync"/>).
    /// </summary>
    public bool SentDisconnect { get; private set; }

    /// <summary>
    /// After <see cref="RunAsync"/>, on a transport that closes both ways at once (Kestrel's, TLS over it): when Relay
    /// sent a DISCONNECT, reads away what the client still sends until it closes, at most <c>Relay:Ingress:CloseTimeout</c>.
    /// Closed with the client's bytes unread, the connection was reset, and the reset could destroy the DISCONNECT (and,
    /// over TLS, everything still being decrypted) before the client read it. The bare socket does this itself
    /// (<see cref="Sending.BareSocketTransport.FinishAsync"/>), for every end.
    /// </summary>
    public async Task DrainAsync()
    {
        if (!DrainsBeforeClosing)
        {
            return;
        }

        var input = _transport.Input;
        using var limit = new CancellationTokenSource(Node.Options.CloseTimeout);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(limit.Token).ConfigureAwait(false);
                input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException or ConnectionResetException or System.Security.Authentication.AuthenticationException)
        {
            // The limit passed, or the connection failed meanwhile: it closes as it is.
        }
        finally
        {
            await _transport.Output.CompleteAsync().ConfigureAwait(false);
        }
    }

    private bool DrainsBeforeClosing => SentDisconnect && _transport is not Sending.BareSocketTransport;

    /// <summary>Whether the connection still takes deliveries (it has not begun to close).</summary>
    public bool Accepting => Volatile.Read(ref _closing) == 0;

    /// <summary>
    /// Serves the connection until it ends. Not async itself: the read loop ends the connection (<see cref="EndAsync"/>,
    /// then on the bare socket <see cref="Owner"/>'s end, so the listener holds no frame either); a frame awaiting it was
    /// 128 more bytes per idle connection (docs/benchmarks.md, MQTT). On the bare socket the task returned completes when
    /// the loop first waits for input, not when the connection ends: the loop then holds no frame while its read waits,
    /// and goes on in a new call when the read completes.
    /// </summary>
    public Task RunAsync()
    {
        Node.Register(this);
        return ReadLoopAsync(resumed: false);
    }

    /// <summary>Once the read loop has stopped: closes, waits for the write loop and hands the session back.</summary>
    private async Task EndAsync()
    {
        try
        {
            // Closing completes the queue, which starts the write loop if it was stopped: it writes what is queued (a
            // DISCONNECT last) and ends.
            await CloseAsync().ConfigureAwait(false);
            await WriterEnded().WaitAsync(Node.Options.CloseTimeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Abort();
        }
        finally
        {
            // A shared subscription's member's unacknowledged deliveries go to another member; a persistent session
            // gets back the rest of what this connection did not deliver, for the next one.
            if (_session is { } session)
            {
                var undelivered = Undelivered();
                undelivered.RemoveAll(item => item is { Shared.JoinedShare: { } share, Release: false } && share.Offer(item.Message!, session));
                if (session.ExpirySeconds > 0)
                {
                    session.KeepAwaitingRelease(AwaitingRelease());
                }

                session.HandBack(session.ExpirySeconds > 0 ? undelivered : []);

                // The store gets the session as it is now, for a node the client connects to next; a session taken
                // over from another node is written when it is handed over instead.
                bool movedAway;
                lock (this)
                {
                    movedAway = _movedAway;
                }

                if (session.ExpirySeconds > 0 && !session.Discarded && !movedAway)
                {
                    _ = _broker.SaveAsync(session, held: true);
                }
            }
            Node.Unregister(this);
            if (_countedApp is { } app)
            {
                Node.AppLimits.Closed(app);
            }

            _queue.Clear();
        }
    }

    /// <summary>
    /// Messages matching <paramref name="sink"/>'s filter were lost before this node and history no longer holds them
    /// (called in order with deliveries, before the first message after the loss). MQTT has no message for a loss and no
    /// seq to resume from, so a QoS 1 or 2 subscriber, promised every message, is not carried past it: the connection ends
    /// after what is queued (MQTT 5: DISCONNECT 0x80 with a reason string naming the filter; 3.1.1: closed), and the
    /// client sees the disconnect. A QoS 0 subscriber was promised at most once: the loss is logged and delivery goes on.
    /// </summary>
    public void Lost(MqttSubscriptionSink sink)
    {
        if (sink.Qos == 0)
        {
            LogLossPassed(Logger, ConnectionId, sink.Filter);
            return;
        }

        LogLossClosing(Logger, ConnectionId, sink.Filter);
        Close(MqttReasonCodes.UnspecifiedError, $"messages matching '{sink.Filter}' were lost before this node and history no longer holds them: nothing after the loss is sent on this connection; connect and subscribe again");
    }

    public void Abort()
    {
        try
        {
            if (_transport is BareSocketTransport bare)
            {
                bare.Abort();
            }
            else
            {
                _abort!();
            }
        }
        catch (ObjectDisposedException)
        {
            // Gone already.
        }
    }

    /// <inheritdoc />
    public void Drain(Relay.Core.Protocol.RelayError error) => Close(MqttReasonCodes.ServerShuttingDown, "node draining: reconnect (another node takes the connection)");

    /// <summary>Called once a second by the node: the CONNECT timeout, keep-alive, token expiry and close deadlines.</summary>
    public void CheckDeadlines(DateTimeOffset now)
    {
        var ticks = now.UtcTicks;
        if (ticks >= Interlocked.Read(ref _closeDeadlineTicks))
        {
            Abort();
            return;
        }

        _queue.TrimIfUnused();
        (_transport as BareSocketTransport)?.Output.Sweep();
        _session?.ForgetQuietChannels();
        if (_principal is null)
        {
            if (ticks >= _connectDeadlineTicks)
            {
                LogConnectTimeout(Logger, ConnectionId, Settings.ConnectTimeout.TotalSeconds);
                Close(0, null);
                Abort();
            }

            return;
        }

        // MQTT 3.1.1 §3.1.2.10, 5.0 §3.1.2.10: one and a half keep-alives without a packet and the server disconnects.
        if (_keepAliveSeconds > 0 && ticks - Interlocked.Read(ref _lastInputTicks) > TimeSpan.TicksPerSecond * _keepAliveSeconds * 3 / 2)
        {
            LogKeepAliveExpired(Logger, ConnectionId, _keepAliveSeconds);
            Close(MqttReasonCodes.KeepAliveTimeout, "keep-alive timeout: no packet for 1.5 times the keep-alive");
            return;
        }

        if (_principal.ExpiresAt is { } expiresAt && now >= expiresAt + Node.TokenGrace)
        {
            Close(MqttReasonCodes.NotAuthorized, "token expired: connect again with a new token");
        }
    }

    /// <summary>Enqueues a control packet for this client.</summary>
    private void Send(MqttPacket packet) => Enqueue(new MqttOutbound(null, MqttEncoder.Encode(packet, _level == 0 ? (byte)4 : _level), 0));

    /// <summary>Sends a PUBACK, PUBREC, PUBREL or PUBCOMP without properties (<paramref name="reasonCode"/> on MQTT 5 only), allocating nothing.</summary>
    private void SendAck(MqttPacketType type, ushort packetId, byte reasonCode = 0) =>
        Enqueue(MqttOutbound.Acknowledgement(type, packetId, V5 ? reasonCode : (byte)0));

    /// <summary>
    /// Everything not yet sent counts against the node's one send budget (<c>Relay:Ingress:SendQueueBytes</c>): a client
    /// that falls further behind is cut as a slow consumer, as a realtime one is.
    /// </summary>
    internal void Enqueue(MqttOutbound item)
    {
        if (item is { Message: not null, Frame: null, Qos: 0, PacketId: 0, Release: false, Shared: null } && _transport is BareSocketTransport bare && TryWriteNow(bare.Output, item))
        {
            return;
        }

        if (_queue.TryWrite(item, Node.Options.SendQueueBytes, ParkedBytes))
        {
            if (ParkedBytes > 0)
            {
                // The write loop may be waiting for a slot: what came may be a control packet it can write now.
                WakeWriter();
            }
        }
        else if (Volatile.Read(ref _closing) == 0)
        {
            LogSlowConsumer(Logger, ConnectionId, Node.Options.SendQueueBytes);
            Node.CountSlowConsumer();
            _queue.Clear();
            Close(MqttReasonCodes.QuotaExceeded, $"disconnected as a slow consumer: more than {Node.Options.SendQueueBytes} bytes waited to be sent");
        }
    }

    /// <summary>
    /// A QoS 0 delivery on the bare socket, when nothing is queued, held back or being written ahead of it: its frame,
    /// the same bytes for every subscriber at its protocol level, goes from the delivering thread straight into the send
    /// buffer, as a WebSocket delivery does, without waking the write loop (a fan-out woke 10,000 write loops per burst).
    /// A delivery that needs this connection's own bytes (MQTT 5 subscription identifiers, topic aliases, the time left of
    /// an expiring message, a client maximum it exceeds) goes through the write loop. False: queue it.
    /// </summary>
    private bool TryWriteNow(SocketWriter output, in MqttOutbound item)
    {
        var message = item.Message!;
        if (message.Properties is { ExpiresAt: not 0 } || _aliasesToSend > 0 || (V5 && _session?.Identified is { Count: > 0 }))
        {
            return false;
        }

        var frame = MqttPublishFrame.Of(message).Get(message, _level, 0);
        if (frame.Length > _clientMaxPacket)
        {
            return false;
        }

        lock (_queue.Gate)
        {
            // The write loop marks what it took from the queue (SocketWriter.MarkHolding) until its flush, so an empty
            // queue here means nothing ahead of this frame is outside the send buffer.
            if (Volatile.Read(ref _closing) != 0 || HasParked || _queue.Count != 0
                || !output.TryWriteNow(frame, item.Retain ? (byte)0x01 : (byte)0, Node.Options.SendQueueBytes))
            {
                return false;
            }
        }

        Node.Metrics.FrameSent();
        return true;
    }

    /// <summary>
    /// Ends the connection: an MQTT 5 client is sent DISCONNECT with <paramref name="reasonCode"/> after what is queued
    /// (MQTT 3.1.1 has no server DISCONNECT: the connection just closes); the read loop stops, and the node aborts the
    /// transport if it has not closed within <c>Relay:Ingress:CloseTimeout</c>.
    /// </summary>
    private void Close(byte reasonCode, string? reason)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }

        Interlocked.Exchange(ref _closeDeadlineTicks, (Node.Time.GetUtcNow() + Node.Options.CloseTimeout).UtcTicks);

        // Deliveries from now go to the session (kept while it is persistent), not to a queue that is ending.
        _session?.Detach(this, Node.Time.GetUtcNow());
        if (V5 && reasonCode != 0)
        {
            SentDisconnect = true;
            _queue.TryWrite(new MqttOutbound(null, MqttEncoder.Encode(new MqttDisconnect { ReasonCode = reasonCode, Properties = reason is null ? null : new MqttProperties { ReasonString = reason } }, 5), 0));
        }

        _queue.Complete();
        try
        {
            // The read loop stops waiting for input, and the write loop for an in-flight slot (it sees _closing).
            if (_transport is BareSocketTransport bare)
            {
                bare.StopReading();
            }
            else
            {
                _transport.Input.CancelPendingRead();
            }

            WakeWriter();
        }
        catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
        {
            // The connection finished meanwhile: nothing is waiting.
        }
    }

    private async Task ReadLoopAsync(bool resumed)
    {
        // The input is read from _transport each time, not kept in this frame.
        Queue<Task>? publishing = null;
        Exception? failure = null;

        // Set when this frame ends to let a waiting read resume in a new one: nothing here ends the connection then.
        var suspended = false;
        try
        {
            try
            {
                // A resumed frame takes its completed read even when the connection is closing meanwhile (the reader's
                // buffer goes back to the pool once the read is taken and advanced past).
                while (resumed || Volatile.Read(ref _closing) == 0)
                {
                    ReadResult result;
                    if (resumed)
                    {
                        // The read the frame before this one left waiting has completed.
                        resumed = false;
                        result = ((SocketReader)_transport.Input).TakeCompletedRead();
                    }
                    else
                    {
                        // Input already there (the rest of a burst, read a buffer at a time) continues the batch within
                        // its bounds; a read that waits ends it first.
                        var reading = _transport.Input.ReadAsync();
                        if (_side?.Batch is { } batch && (!reading.IsCompleted || batch.IsDue))
                        {
                            batch.Submit();
                        }

                        if (!reading.IsCompleted && Owner is not null && publishing is not { Count: > 0 } && _transport.Input is SocketReader reader)
                        {
                            // On the bare socket a read that waits holds no frame (the frame, 264 bytes, was the most an idle
                            // connection held, docs/benchmarks.md, MQTT): this one ends, and the read resumes in a new one.
                            reader.OnReadCompleted(s_resumeRead, this);
                            suspended = true;
                            return;
                        }

                        result = await reading.ConfigureAwait(false);
                    }

                    var buffer = result.Buffer;

                    // Taken now, so the ReadResult (32 B) is not kept in this loop's frame across the awaits below.
                    var ended = result.IsCompleted || result.IsCanceled;
                    try
                    {
                        while (Volatile.Read(ref _closing) == 0)
                        {
                            // A subscriber's acknowledgements, one per QoS 1 or 2 delivery, are read without a packet object.
                            MqttPacket? packet = null;
                            var ack = MqttDecoder.TryReadAck(ref buffer, _level, out var ackType, out var ackId, out var ackReason);
                            if (!ack && !MqttDecoder.TryRead(ref buffer, _level, Settings.MaxPacketBytes, out packet))
                            {
                                break;
                            }

                            Interlocked.Exchange(ref _lastInputTicks, Node.Time.GetUtcNow().UtcTicks);
                            if (ack)
                            {
                                Acknowledge(ackType, ackId, ackReason);
                                continue;
                            }

                            // A handler keeps nothing of the input past its first await (a payload is copied first).
                            ValueTask handling;
                            if (packet is MqttPublish && _transport is BareSocketTransport)
                            {
                                var batch = Side.Batch ??= new DeliveryBatch(Node.Time);
                                batch.Enter();
                                try
                                {
                                    handling = HandleAsync(packet);
                                }
                                finally
                                {
                                    DeliveryBatch.Leave();
                                }

                                batch.CountRequest();
                                if (batch.IsDue)
                                {
                                    batch.Submit();
                                }
                            }
                            else
                            {
                                handling = HandleAsync(packet!);
                            }

                            if (handling.IsCompleted)
                            {
                                await handling.ConfigureAwait(false);
                                continue;
                            }

                            _side?.Batch?.Submit();

                            if (packet is MqttPublish { Retain: false })
                            {
                                // On a networked bus the publish is on the wire in order; the next may follow before its answer.
                                // A retained one is not: it asks the retained store for room first, so the next waits for it.
                                (publishing ??= new Queue<Task>()).Enqueue(handling.AsTask());
                                await DrainAsync(publishing, MaxPipelinedPublishes - 1).ConfigureAwait(false);
                                continue;
                            }

                            if (publishing is { Count: > 0 })
                            {
                                await DrainAsync(publishing, 0).ConfigureAwait(false);
                            }

                            await handling.ConfigureAwait(false);
                        }
                    }
                    finally
                    {
                        _transport.Input.AdvanceTo(buffer.Start, buffer.End);
                    }

                    if (ended)
                    {
                        break;
                    }
                }
            }
            catch (MqttProtocolException ex)
            {
                ProtocolViolation(ex);
            }
            catch (Exception ex) when (ex is IOException or ConnectionResetException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
            {
                LogReceiveEnded(Logger, ConnectionId, ex.Message);
            }
            finally
            {
                // Nothing deferred is left behind: a deferred flush that never ran would leave a subscriber's bytes unsent.
                if (!suspended)
                {
                    _side?.Batch?.Submit();
                    if (publishing is not null)
                    {
                        await DrainAsync(publishing, 0).ConfigureAwait(false);
                    }
                }
            }
        }
        catch (Exception ex) when (Owner is not null && ex is not OutOfMemoryException)
        {
            // Nothing awaits a bare-socket connection: its owner logs what failed.
            failure = ex;
        }
        finally
        {
            if (!suspended)
            {
                try
                {
                    await EndAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (Owner is not null && ex is not OutOfMemoryException)
                {
                    failure ??= ex;
                }

                if (Owner is { } owner)
                {
                    await owner.EndedAsync((BareSocketTransport)_transport, GateAddress, RefusedAtAccept is not null, failure).ConfigureAwait(false);
                }
            }
        }
    }

    /// <summary>
    /// A packet broke the rules: MQTT 5 answers with the reason code the codec or handler gave (CONNACK before a session,
    /// DISCONNECT after), MQTT 3.1.1 closes without a word, save a refused protocol version, which gets CONNACK 0x01.
    /// </summary>
    private void ProtocolViolation(MqttProtocolException ex)
    {
        LogProtocolViolation(Logger, ConnectionId, ex.ReasonCode, ex.Message);
        if (_principal is null)
        {
            if (ex.ReasonCode == MqttReasonCodes.UnsupportedProtocolVersion)
            {
                Send(new MqttConnAck { ReasonCode = MqttReasonCodes.V3UnacceptableProtocolVersion });
            }
            else if (V5)
            {
                Send(new MqttConnAck { ReasonCode = ex.ReasonCode, Properties = new MqttProperties { ReasonString = ex.Message } });
            }

            Close(0, null);
            return;
        }

        Close(ex.ReasonCode, ex.Message);
    }

    private ValueTask HandleAsync(MqttPacket packet)
    {
        if (_principal is null)
        {
            return ConnectAsync((MqttConnect)packet);
        }

        switch (packet)
        {
            case MqttPublish publish:
                return PublishAsync(publish);
            case MqttAck ack:
                Acknowledge(ack.Type, ack.PacketId, ack.ReasonCode);
                return ValueTask.CompletedTask;
            case MqttSubscribe subscribe:
                // When the SUBSCRIBE reached the host (on the bare socket): a publish read first on another thread but
                // sent after it still reaches the new subscription.
                return SubscribeAsync(subscribe, _transport.Input is SocketReader reader ? reader.ArrivedTicks : 0);
            case MqttUnsubscribe unsubscribe:
                return UnsubscribeAsync(unsubscribe);
            case MqttPing { Type: MqttPacketType.PingReq }:
                Enqueue(new MqttOutbound(null, MqttOutbound.PingResponse, 0));
                return ValueTask.CompletedTask;
            case MqttDisconnect { Type: MqttPacketType.Disconnect } disconnect:
                // Normal disconnection drops the will; MQTT 5's 0x04 asks for it to be published.
                _disconnectedCleanly = disconnect.ReasonCode != 0x04;

                // MQTT 5 §3.14.2.2.2: DISCONNECT may change the session's expiry (0: it ends with the connection).
                if (disconnect.Properties?.SessionExpiryInterval is { } expiry && _session is { } session)
                {
                    session.ExpirySeconds = Math.Min(expiry, Settings.MaxSessionExpirySeconds);
                }

                Close(0, null);
                return ValueTask.CompletedTask;
            case MqttDisconnect { Type: MqttPacketType.Auth }:
                throw MqttProtocolException.Protocol("AUTH without an authentication method in CONNECT");
            default:
                throw MqttProtocolException.Protocol($"a client does not send {packet.Type}");
        }
    }

    /// <summary>A PUBACK, PUBREC, PUBREL or PUBCOMP from the client (read with or without a packet object).</summary>
    private void Acknowledge(MqttPacketType type, ushort packetId, byte reasonCode)
    {
        switch (type)
        {
            case MqttPacketType.PubAck:
                Acknowledged(packetId, Inflight.AwaitingPubAck);
                break;
            case MqttPacketType.PubRec:
                Received(packetId, reasonCode);
                break;
            case MqttPacketType.PubComp:
                Acknowledged(packetId, Inflight.AwaitingPubComp);
                break;
            default:
                Released(packetId);
                break;
        }
    }

    // Waits for the oldest publishes in flight until at most `keep` remain; each answers for itself.
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

    /// <summary>The queue starts the write loop (<see cref="ISendQueueReader"/>): on the thread pool, allocating nothing.</summary>
    void ISendQueueReader.Start() => ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);

    void IThreadPoolWorkItem.Execute() => _ = WriteLoopAsync();

    /// <summary>Completes when the write loop has ended for good (not when it stopped for want of work).</summary>
    private Task WriterEnded()
    {
        var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return Interlocked.CompareExchange(ref _writerEnd, waiter, null) switch
        {
            null => waiter.Task,
            Exception failure => Task.FromException(failure),
            _ => Task.CompletedTask,
        };
    }

    /// <summary>
    /// Writes what is queued and stops when nothing is (no frame held while idle); the queue starts it again with the
    /// next item, or at its end (<see cref="SendQueue{T}.ContinueOrStop"/>). While deliveries are held back by a full
    /// window and nothing else is queued, it suspends instead (<see cref="LoopWake"/>): the frame ends, and an
    /// acknowledgement, a new item or the close starts it again (<see cref="WakeWriter"/>; the queue still counts its
    /// reader as running meanwhile, so it starts no second one), so waiting for the client
    /// allocates nothing (a wait on a semaphore made a task node each time, a frame a state machine box). Ends for good
    /// when the queue has ended and is written, or the transport failed.
    /// </summary>
    private async Task WriteLoopAsync()
    {
        var output = _transport.Output;
        var stopped = false;
        Exception? failure = null;
        try
        {
            while (true)
            {
                if (!HasParked || Volatile.Read(ref _closing) != 0)
                {
                    if (!_queue.ContinueOrStop())
                    {
                        // Nothing to write: everything written was flushed at the end of the last pass.
                        stopped = true;
                        return;
                    }

                    if (!await _queue.WaitToReadAsync().ConfigureAwait(false))
                    {
                        break;
                    }
                }

                var written = 0;
                while (written < FlushBytes)
                {
                    // Read before what decides a wait, so a wake-up after it is seen (LoopWake.TrySuspend).
                    var wakes = _side is { } s ? s.Writer.Observe() : 0;
                    written += WriteReleases(output);
                    written += WriteParked(output);
                    if (!_queue.TryPeek(out var item))
                    {
                        if (!HasParked || Volatile.Read(ref _closing) != 0)
                        {
                            break;
                        }

                        // The client's window is full: what is written goes out, then wait for a PUBACK or PUBCOMP
                        // (or a PUBREC, whose PUBREL must go out ahead of what waits), or for anything queued.
                        if (written > 0)
                        {
                            await output.FlushAsync().ConfigureAwait(false);
                            written = 0;
                        }

                        // Suspended (the frame ends; WakeWriter starts the loop again), unless a wake-up came since `wakes`.
                        if (Side.Writer.TrySuspend(wakes))
                        {
                            stopped = true;
                            return;
                        }

                        continue;
                    }

                    // The item leaves the queue only once it is parked or written (a QoS 1 or 2 delivery: in flight), so a
                    // snapshot of the session, which reads the queue before those, never misses it (AddUnacknowledged).
                    if (item.Message is not null && (HasParked || (item.Qos > 0 && !TryTakeSlot())))
                    {
                        // Behind the window (a QoS 0 one too, to keep the order): held back; control packets go on.
                        Park(item);
                        TakeQueued(item);
                        continue;
                    }

                    written += Write(output, item);
                    TakeQueued(item);
                }

                var flushed = await output.FlushAsync().ConfigureAwait(false);
                if (flushed.IsCompleted || flushed.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ConnectionResetException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            LogSendEnded(Logger, ConnectionId, ex.Message);
        }
        catch (Exception ex)
        {
            // EndAsync gets it (no one awaits a loop started on demand).
            failure = ex;
        }
        finally
        {
            if (!stopped)
            {
                await EndWritingAsync(output, failure).ConfigureAwait(false);
            }
        }
    }

    private async Task EndWritingAsync(PipeWriter output, Exception? failure)
    {
        try
        {
            // Kestrel's transport closes both ways when its output completes: after a DISCONNECT that waits for the
            // client to read it and close (DrainAsync completes it).
            if (!DrainsBeforeClosing)
            {
                await output.CompleteAsync().ConfigureAwait(false);
            }

            if (Volatile.Read(ref _closing) == 0)
            {
                // The writer stopped while the connection had not begun to close (its socket failed, or an error): the
                // connection ends, so the client sees it end rather than a connection that no longer answers. Kestrel's
                // transport closes when its output completes; the bare socket's does not.
                Abort();
            }
        }
        catch (Exception ex)
        {
            failure ??= ex;
        }
        finally
        {
            var ended = Interlocked.CompareExchange(ref _writerEnd, failure ?? WriterDone, null);
            if (ended is TaskCompletionSource waiter)
            {
                if (failure is null)
                {
                    waiter.TrySetResult();
                }
                else
                {
                    waiter.TrySetException(failure);
                }
            }
        }
    }

    /// <summary>
    /// The write loop takes the item it peeked, parked or wrote from the queue: on the bare socket with the writer marked
    /// as holding something not yet in the send buffer until its flush, so no delivery skips ahead of it
    /// (<see cref="TryWriteNow"/>). Nothing is taken when the queue no longer starts with it (a slow consumer's queue was
    /// cleared meanwhile, and its DISCONNECT may be queued).
    /// </summary>
    private void TakeQueued(in MqttOutbound taken)
    {
        lock (_queue.Gate)
        {
            if (_queue.TryPeek(out var head) && IsSameItem(head, taken))
            {
                _queue.TryRead(out _);
            }

            if (_transport is BareSocketTransport bare)
            {
                bare.Output.MarkHolding();
            }
        }
    }

    private static bool IsSameItem(in MqttOutbound a, in MqttOutbound b) =>
        ReferenceEquals(a.Message, b.Message) && ReferenceEquals(a.Frame, b.Frame) && a.PacketId == b.PacketId && a.Release == b.Release
        && a.Qos == b.Qos && ReferenceEquals(a.Shared, b.Shared) && a.AckType == b.AckType && a.AckReason == b.AckReason;

    private int Write(PipeWriter output, MqttOutbound item)
    {
        if (item.Frame is { } control)
        {
            if (item.IsAcknowledgement)
            {
                return MqttEncoder.WriteAck(output, item.AckType, item.PacketId, item.AckReason, V5);
            }

            output.Write(control);
            return control.Length;
        }

        var message = item.Message!;
        if (item.Release)
        {
            // A QoS 2 delivery a previous connection had released: PUBREL again (MQTT 5 §4.4), its slot held until PUBCOMP.
            lock (InflightTable)
            {
                InflightTable[item.PacketId] = new InflightEntry(Inflight.AwaitingPubComp, message, item.Qos, item.Shared, ++Side.Sent);
            }

            var release = output.GetSpan(4);
            release[0] = 0x62;
            release[1] = 2;
            release[2] = (byte)(item.PacketId >> 8);
            release[3] = (byte)item.PacketId;
            output.Advance(4);
            return 4;
        }

        // MQTT 5 §3.3.2.3.3: a message past its expiry is not sent, unless its delivery began on an earlier connection
        // (a resend with its packet id); one sent tells the time left. Only messages with an expiry read the clock.
        var expiring = message.Properties is { ExpiresAt: not 0 } properties ? properties : null;
        var nowMs = 0L;
        if (expiring is not null)
        {
            nowMs = Node.Time.GetUtcNow().ToUnixTimeMilliseconds();
            if (item.PacketId == 0 && expiring.IsExpiredAt(nowMs))
            {
                if (item.Qos > 0)
                {
                    Interlocked.Decrement(ref _inflightCount);
                }

                return 0;
            }
        }

        var frames = MqttPublishFrame.Of(message);
        var frame = frames.Get(message, _level, Math.Min(item.Qos, (byte)1));
        var identifiers = V5 ? Identifiers(item) : null;
        var (alias, known) = _aliasesToSend > 0 ? TopicAlias(message.Channel) : default;
        var personal = identifiers is not null || alias != 0;
        var length = personal ? frames.LengthFor(frame, identifiers, alias, known, item.Qos > 0) : frame.Length;
        if (length > _clientMaxPacket && alias != 0 && !known)
        {
            // A new alias adds three bytes: a packet that fits only without it goes out with its topic alone.
            alias = 0;
            personal = identifiers is not null;
            length = personal ? frames.LengthFor(frame, identifiers, 0, false, item.Qos > 0) : frame.Length;
        }

        if (length > _clientMaxPacket)
        {
            // MQTT 5 §3.1.2.11.4: a packet larger than the client's maximum is not sent (as if delivered).
            if (item.Qos > 0)
            {
                Interlocked.Decrement(ref _inflightCount);
            }

            return 0;
        }

        var span = output.GetSpan(length)[..length];
        if (personal)
        {
            frames.CopyFor(frame, identifiers, alias, known, item.Qos > 0, span);
        }
        else
        {
            frame.CopyTo(span);
        }

        if (alias != 0 && !known)
        {
            // Taken only once its PUBLISH is written: the client learns the alias from this very packet.
            _side!.SentAliases!.Add(message.Channel, alias);
        }

        if (expiring is not null && V5)
        {
            MqttPublishFrame.WriteTimeLeft(span, item.Qos > 0, MqttMessageProperties.SecondsLeft(expiring, nowMs));
        }

        if (item.Qos > 0)
        {
            // A QoS 2 PUBLISH is its QoS 1 frame with the other QoS bits in the fixed header.
            if (item.Qos == 2)
            {
                span[0] = (byte)((span[0] & ~0x06) | 0x04);
            }

            var state = item.Qos == 2 ? Inflight.AwaitingPubRec : Inflight.AwaitingPubAck;
            ushort packetId;
            if (item.PacketId != 0)
            {
                // Sent again for a resumed session: the same packet id, with DUP (MQTT 3.1.1 §4.4, 5.0 §4.4).
                packetId = item.PacketId;
                span[0] |= 0x08;
                lock (InflightTable)
                {
                    InflightTable[packetId] = new InflightEntry(state, message, item.Qos, item.Shared, ++Side.Sent);
                }
            }
            else
            {
                packetId = NextPacketId(state, message, item.Qos, item.Shared);
            }

            var at = MqttPublishFrame.PacketIdOffset(span);
            span[at] = (byte)(packetId >> 8);
            span[at + 1] = (byte)packetId;
        }

        if (item.Retain)
        {
            span[0] |= 0x01;
        }

        output.Advance(length);
        return length;
    }

    /// <summary>
    /// The MQTT 5 Subscription Identifiers a delivery carries (MQTT 5 §3.3.4: of every subscription matching its topic),
    /// or null for none; a shared subscription's delivery carries its own. The lists are the write loop's, reused.
    /// </summary>
    private List<int>? Identifiers(in MqttOutbound item)
    {
        if (item.Shared is { } member)
        {
            if (member.Identifier == 0)
            {
                return null;
            }

            var own = Side.Identifiers ??= [];
            own.Clear();
            own.Add(member.Identifier);
            return own;
        }

        if (_session?.Identified is not { Count: > 0 } identified)
        {
            return null;
        }

        var side = Side;
        var sinks = side.IdentifiedSinks ??= [];
        var identifiers = side.Identifiers ??= [];
        sinks.Clear();
        identified.Match(item.Message!.Channel, sinks);
        identifiers.Clear();
        foreach (var sink in sinks)
        {
            if (!sink.IsOwn(item.Message) && !identifiers.Contains(sink.Identifier))
            {
                identifiers.Add(sink.Identifier);
            }
        }

        return identifiers.Count == 0 ? null : identifiers;
    }

    /// <summary>
    /// The Topic Alias a delivery of <paramref name="topic"/> carries on this connection (MQTT 5 §3.3.2.3.4), and whether
    /// the client knows it already (the topic is then sent empty); a topic without one gets the next free alias, to be
    /// sent with it, while any is left; once all are taken, other topics go with their name and no alias (none is ever
    /// replaced: a device's topics are few, and a replaced alias would cost its topic again on both sides). (0, false):
    /// none. The write loop's alone, so wire order and the map agree.
    /// </summary>
    private (ushort Alias, bool Known) TopicAlias(string topic)
    {
        var sent = Side.SentAliases ??= new Dictionary<string, ushort>(StringComparer.Ordinal);
        if (sent.TryGetValue(topic, out var alias))
        {
            return (alias, true);
        }

        return sent.Count < _aliasesToSend ? ((ushort)(sent.Count + 1), false) : default;
    }

    /// <summary>The next packet id not in flight (ids 1 to 65535, reused as their exchanges end), recorded as <paramref name="state"/>.</summary>
    private ushort NextPacketId(Inflight state, RelayMessage message, byte qos, MqttSubscriptionSink? shared)
    {
        var inflight = InflightTable;
        lock (inflight)
        {
            while (true)
            {
                _nextPacketId = _nextPacketId % ushort.MaxValue + 1;
                var side = Side;
                if (inflight.TryAdd((ushort)_nextPacketId, new InflightEntry(state, message, qos, shared, side.Sent + 1)))
                {
                    side.Sent++;
                    return (ushort)_nextPacketId;
                }
            }
        }
    }

    /// <summary>
    /// Holds <paramref name="packetIds"/>, those of deliveries another node's connection sent and the client had not
    /// acknowledged, for the same deliveries sent again from history (with DUP): no other delivery takes one meanwhile.
    /// Called before anything is written to the connection.
    /// </summary>
    internal void Reserve(IEnumerable<ushort> packetIds)
    {
        var inflight = InflightTable;
        lock (inflight)
        {
            foreach (var packetId in packetIds)
            {
                inflight.TryAdd(packetId, new InflightEntry(Inflight.Reserved, ReservedSlot, 0, null, 0));
            }
        }
    }

    /// <summary>Frees the held packet ids whose deliveries did not come again (history no longer had them).</summary>
    internal void Unreserve(IReadOnlyCollection<ushort> packetIds)
    {
        if (packetIds.Count == 0 || InflightOrNull is not { } inflight)
        {
            return;
        }

        lock (inflight)
        {
            foreach (var packetId in packetIds)
            {
                if (inflight.TryGetValue(packetId, out var entry) && entry.State == Inflight.Reserved)
                {
                    inflight.Remove(packetId);
                }
            }
        }
    }

    /// <summary>
    /// A PUBACK (QoS 1) or PUBCOMP (QoS 2) ends a delivery's exchange: its in-flight slot is free for the next QoS 1 or 2
    /// delivery. An id not in flight, or not at that step, is ignored.
    /// </summary>
    private void Acknowledged(ushort packetId, Inflight expected)
    {
        bool removed;
        var inflight = InflightTable;
        lock (inflight)
        {
            removed = inflight.TryGetValue(packetId, out var entry) && entry.State == expected && inflight.Remove(packetId);
        }

        if (removed)
        {
            FreeSlot();
        }
    }

    private bool HasParked => ParkedBytes > 0;

    /// <summary>The deliveries in flight, made on the first (locked by itself).</summary>
    private Dictionary<ushort, InflightEntry> InflightTable
    {
        get
        {
            var side = Side;
            return Volatile.Read(ref side.Inflight) ?? Interlocked.CompareExchange(ref side.Inflight, [], null) ?? side.Inflight!;
        }
    }

    /// <summary>The client's QoS 2 publishes awaiting PUBREL, made on the first (locked by itself).</summary>
    private HashSet<ushort> AwaitingReleaseSet
    {
        get
        {
            var side = Side;
            return Volatile.Read(ref side.AwaitingRelease) ?? Interlocked.CompareExchange(ref side.AwaitingRelease, [], null) ?? side.AwaitingRelease!;
        }
    }

    /// <summary>Something the write loop may wait for happened (a slot freed, a PUBREL owed, an item queued, the close): starts it again if it suspended.</summary>
    private void WakeWriter()
    {
        if (_side is { } side && side.Writer.Wake())
        {
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    private void Park(MqttOutbound item)
    {
        var side = Side;
        var parked = side.Parked ??= new Queue<MqttOutbound>();
        lock (parked)
        {
            parked.Enqueue(item);
        }

        Interlocked.Add(ref side.ParkedBytes, MqttOutbound.Size(item));
    }

    /// <summary>Writes the held-back deliveries, in order, as the window lets them (a QoS 0 one needs no slot).</summary>
    private int WriteParked(PipeWriter output)
    {
        if (!HasParked || _side is not { Parked: { } parked } side)
        {
            return 0;
        }

        var written = 0;
        lock (parked)
        {
            while (parked.TryPeek(out var item) && (item.Qos == 0 || TryTakeSlot()))
            {
                parked.Dequeue();
                Interlocked.Add(ref side.ParkedBytes, -MqttOutbound.Size(item));
                written += Write(output, item);
            }
        }

        return written;
    }

    // Only the write loop takes slots, so the check and the increment need no lock; acknowledgements free them anywhere.
    private bool TryTakeSlot()
    {
        if (Volatile.Read(ref _inflightCount) >= _window)
        {
            return false;
        }

        Interlocked.Increment(ref _inflightCount);
        return true;
    }

    private void FreeSlot()
    {
        Interlocked.Decrement(ref _inflightCount);
        WakeWriter();
    }

    /// <summary>Writes the PUBRELs owed (in the order of their PUBRECs, MQTT 5 §4.6); returns the bytes written.</summary>
    private int WriteReleases(PipeWriter output)
    {
        var written = 0;
        while (_side is { } side && Volatile.Read(ref side.Releases) is { } releases && releases.TryDequeue(out var packetId))
        {
            var span = output.GetSpan(4);
            span[0] = 0x62;
            span[1] = 2;
            span[2] = (byte)(packetId >> 8);
            span[3] = (byte)packetId;
            output.Advance(4);
            written += 4;
        }

        return written;
    }

    /// <summary>
    /// A PUBREC: the client has the QoS 2 message; the server releases it (PUBREL) and keeps the slot until PUBCOMP
    /// (MQTT 5 §4.9: Receive Maximum counts a QoS 2 PUBLISH until its PUBCOMP). An MQTT 5 PUBREC with a failure code
    /// ends the exchange there; a PUBREC for an id not in flight gets PUBREL all the same (MQTT 5: 0x92), so the client
    /// can finish.
    /// </summary>
    private void Received(ushort packetId, byte reasonCode)
    {
        bool known, freed = false, released = false;
        var inflight = InflightTable;
        lock (inflight)
        {
            ref var entry = ref CollectionsMarshal.GetValueRefOrNullRef(inflight, packetId);
            known = !Unsafe.IsNullRef(ref entry) && entry.State is Inflight.AwaitingPubRec or Inflight.AwaitingPubComp;
            if (known && reasonCode >= 0x80)
            {
                freed = inflight.Remove(packetId);
            }
            else if (known)
            {
                released = entry.State == Inflight.AwaitingPubRec;
                entry = entry with { State = Inflight.AwaitingPubComp };
            }
        }

        if (freed)
        {
            FreeSlot();
            return;
        }

        if (!released)
        {
            // Not a slot's first PUBREC (a repeat, or an id not in flight): in turn with everything else.
            SendAck(MqttPacketType.PubRel, packetId, known ? (byte)0 : MqttReasonCodes.PacketIdentifierNotFound);
            return;
        }

        // The write loop may be waiting for this very slot, or for anything queued at all.
        var side = Side;
        (Volatile.Read(ref side.Releases) ?? Interlocked.CompareExchange(ref side.Releases, new ConcurrentQueue<ushort>(), null) ?? side.Releases).Enqueue(packetId);
        WakeWriter();
        Enqueue(new MqttOutbound(null, MqttOutbound.Nothing, 0));
    }

    /// <summary>
    /// What this connection did not deliver, for its persistent session: deliveries awaiting acknowledgement (to be sent
    /// again with DUP and their packet ids, or PUBREL again), in packet id order, then QoS 1 and 2 ones never sent.
    /// </summary>
    private List<MqttOutbound> Undelivered()
    {
        var undelivered = new List<MqttOutbound>();
        if (InflightOrNull is { } inflight)
        {
            lock (inflight)
            {
                // In the order they were sent (packet ids wrap from 65535 to 1): MQTT §4.6, redelivered in their order.
                foreach (var (packetId, entry) in inflight.OrderBy(static e => e.Value.Sent))
                {
                    if (entry.State == Inflight.Reserved)
                    {
                        continue;
                    }

                    undelivered.Add(new MqttOutbound(entry.Message, null, entry.Qos, PacketId: packetId, Release: entry.State == Inflight.AwaitingPubComp, Shared: entry.Shared));
                }

                inflight.Clear();
            }
        }

        if (_side is { Parked: { } parked } side)
        {
            lock (parked)
            {
                undelivered.AddRange(parked.Where(static item => item.Qos > 0));
                parked.Clear();
                Interlocked.Exchange(ref side.ParkedBytes, 0);
            }
        }

        // An item the write loop had parked or written but not yet taken from the queue (it was cut off between the
        // two) is in both: it goes back once.
        HashSet<RelayMessage>? taken = null;
        while (_queue.TryRead(out var item))
        {
            if (item.Message is not null && item.Qos > 0
                && !(taken ??= new HashSet<RelayMessage>(undelivered.Select(static u => u.Message!), ReferenceEqualityComparer.Instance)).Contains(item.Message))
            {
                undelivered.Add(item);
            }
        }

        return undelivered;
    }

    /// <summary>
    /// For a snapshot of the session while this connection holds it: copies of the QoS 1 and 2 deliveries the client has
    /// not acknowledged (queued, parked, in flight or awaiting PUBCOMP), nothing taken. The store then starts each channel
    /// before the oldest of them, so a node that resumes the session after this one died sends them again (a duplicate,
    /// never a loss). Read in the order items move (queue, parked, in flight), each entering the next place before it
    /// leaves the one before (the write loop takes an item from the queue after parking or writing it; a parked one is
    /// in flight before its lock is let go), so an item moving meanwhile is read at least once, never missed.
    /// </summary>
    public void AddUnacknowledged(List<MqttOutbound> into)
    {
        _queue.ForEach(into, static (item, list) =>
        {
            if (item is { Message: not null, Qos: > 0 })
            {
                list.Add(item);
            }
        });

        if (_side?.Parked is { } parked)
        {
            lock (parked)
            {
                into.AddRange(parked.Where(static item => item is { Message: not null, Qos: > 0 }));
            }
        }

        if (InflightOrNull is { } inflight)
        {
            lock (inflight)
            {
                foreach (var (packetId, entry) in inflight)
                {
                    if (entry.State == Inflight.Reserved)
                    {
                        continue;
                    }

                    into.Add(new MqttOutbound(entry.Message, null, entry.Qos, PacketId: packetId, Release: entry.State == Inflight.AwaitingPubComp, Shared: entry.Shared));
                }
            }
        }
    }

    /// <summary>A delivery awaiting the client, kept so a persistent session can send it again.</summary>
    private SideState Side => Volatile.Read(ref _side) ?? Interlocked.CompareExchange(ref _side, new SideState(), null) ?? _side!;

    private long ParkedBytes => _side is { } side ? Volatile.Read(ref side.ParkedBytes) : 0;

    private Dictionary<ushort, InflightEntry>? InflightOrNull => _side is { } side ? Volatile.Read(ref side.Inflight) : null;

    /// <summary>A connection's state for QoS 1 and 2, MQTT 5 aliases and identifiers, its will and its publishes (see <see cref="_side"/>).</summary>
    private sealed class SideState
    {
        // Deliveries awaiting the client: a QoS 1 one its PUBACK, a QoS 2 one its PUBREC and then its PUBCOMP. Made on the
        // first (InflightTable): a QoS 0 subscriber never needs one.
        public Dictionary<ushort, InflightEntry>? Inflight;

        // Deliveries entered in Inflight so far (under its lock): each entry's Sent.
        public long Sent;

        // QoS 2 publishes from the client awaiting its PUBREL, made on the first (AwaitingReleaseSet).
        public HashSet<ushort>? AwaitingRelease;

        // The client's QoS 2 publishes being routed, by packet id, with how many times each was resent (DUP) meanwhile: a
        // packet id counts once toward the Receive Maximum and is published once. Made on the first QoS 2 publish; locked
        // with AwaitingRelease.
        public MqttQos2Routing? RoutingQos2;

        // Deliveries held back by a full window, in order, so the control packets queued after them (PUBACK, PUBREC,
        // PUBCOMP, SUBACK, PINGRESP) still go out: a client that has not acknowledged yet still gets its acknowledgements
        // and its pings answered. Created when the window first fills; their bytes count against the send budget.
        public Queue<MqttOutbound>? Parked;
        public long ParkedBytes;

        // The write loop's suspension for an in-flight slot, which WakeWriter ends.
        public LoopWake Writer;

        // PUBRELs owed for PUBRECs (QoS 2 out only): written ahead of deliveries held back by a full window, since only the
        // PUBCOMP they bring frees a QoS 2 slot (bounded by the window: one per delivery awaiting PUBREC).
        public ConcurrentQueue<ushort>? Releases;

        public MqttConnect? Will;

        // On the bare socket, what this client's publishes deliver to other bare-socket connections leaves when its burst
        // ends (DeliveryBatch's rule, as a realtime publisher's): each subscriber gets a burst in one send, not one per
        // buffer of input read. Made at the first publish; the read loop submits it before every wait and when its bounds
        // say so.
        public DeliveryBatch? Batch;

        // This connection's entry in the will store (over Redis; null otherwise): its token once written, null if that failed.
        public Task<string?>? WillEntry;

        // The client's topic aliases (MQTT 5), made on the first.
        public string?[]? TopicAliases;

        // The topics given an alias on this network connection, by the write loop only (made on the first delivery).
        public Dictionary<string, ushort>? SentAliases;

        public TokenBucket? PublishRate;

        // The write loop's scratch for a delivery's Subscription Identifiers (it alone uses them; MQTT 5 only, made on first use).
        public List<MqttSubscriptionSink>? IdentifiedSinks;
        public List<int>? Identifiers;
    }

    // Sent: the connection's count of deliveries written when this one was (its place in the order they went out).
    private readonly record struct InflightEntry(Inflight State, RelayMessage Message, byte Qos, MqttSubscriptionSink? Shared, long Sent);

    // The message of a Reserved entry: none yet.
    private static readonly RelayMessage ReservedSlot = new() { App = string.Empty, Channel = string.Empty, Epoch = string.Empty };

    /// <summary>Where a QoS 1 or 2 delivery's exchange stands.</summary>
    private enum Inflight : byte
    {
        AwaitingPubAck,
        AwaitingPubRec,
        AwaitingPubComp,

        // A packet id another node's connection had sent a delivery with, unacknowledged: held for that delivery, sent
        // again with it from history (Reserve), so no other delivery takes it meanwhile.
        Reserved,
    }

    [LoggerMessage(EventId = 1400, Level = LogLevel.Debug, Message = "MQTT connection {ConnectionId} receive ended: {Reason}")]
    private static partial void LogReceiveEnded(ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 1401, Level = LogLevel.Debug, Message = "MQTT connection {ConnectionId} send ended: {Reason}")]
    private static partial void LogSendEnded(ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 1402, Level = LogLevel.Information, Message = "MQTT connection {ConnectionId} closed for a protocol violation (reason 0x{ReasonCode:X2}): {Detail}")]
    private static partial void LogProtocolViolation(ILogger logger, string connectionId, byte reasonCode, string detail);

    [LoggerMessage(EventId = 1403, Level = LogLevel.Information, Message = "MQTT connection {ConnectionId} sent no CONNECT within {Seconds} s (Relay:Mqtt:ConnectTimeout)")]
    private static partial void LogConnectTimeout(ILogger logger, string connectionId, double seconds);

    [LoggerMessage(EventId = 1404, Level = LogLevel.Information, Message = "MQTT connection {ConnectionId} closed: no packet within 1.5 × its keep-alive of {KeepAlive} s")]
    private static partial void LogKeepAliveExpired(ILogger logger, string connectionId, int keepAlive);

    [LoggerMessage(EventId = 1405, Level = LogLevel.Information, Message = "MQTT connection {ConnectionId} cut as a slow consumer (its {Bytes}-byte send budget was spent)")]
    private static partial void LogSlowConsumer(ILogger logger, string connectionId, long bytes);

    [LoggerMessage(EventId = 1407, Level = LogLevel.Warning, Message = "MQTT connection {ConnectionId} closed: messages matching '{Filter}' (QoS 1) were lost before this node and history no longer holds them")]
    private static partial void LogLossClosing(ILogger logger, string connectionId, string filter);

    [LoggerMessage(EventId = 1408, Level = LogLevel.Information, Message = "MQTT connection {ConnectionId}: messages matching '{Filter}' (QoS 0) were lost before this node; delivery goes on")]
    private static partial void LogLossPassed(ILogger logger, string connectionId, string filter);

    [LoggerMessage(EventId = 1406, Level = LogLevel.Error, Message = "MQTT connection {ConnectionId}: a request failed")]
    private static partial void LogRequestFailed(ILogger logger, Exception exception, string connectionId);
}
