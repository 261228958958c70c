using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;
using Relay.Core.Messages;
using Relay.Ingress.Realtime;
using Relay.Ingress.Sending;

namespace Relay.Ingress.Pusher;

/// <summary>
/// One Pusher Channels client (protocol 7), on a WebSocket or an HTTP fallback session (its <see cref="IPusherTransport"/>):
/// the transport hands it one JSON frame at a time, handled in order; its sender sends what is queued (replies and
/// deliveries alike) within the node's send budget. The node's
/// once-a-second loop checks the activity timeout (a <c>pusher:ping</c>, then 4201 without an answer), key changes and
/// close deadlines. The connection is its app key's: subscribing and client events need the key's capabilities, and
/// private and presence channels a signature made with its secret by the app's server.
/// </summary>
internal sealed partial class PusherConnection : INodeConnection
{
    /// <summary>Close codes of the protocol (pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol).</summary>
    public const int AppDoesNotExist = 4001;
    public const int AppDisabled = 4003;
    public const int OverConnectionQuota = 4004;
    public const int UnsupportedProtocol = 4007;
    public const int NoProtocol = 4008;
    public const int Unauthorized = 4009;
    public const int OverCapacity = 4100;
    public const int ReconnectNow = 4200;
    public const int PongNotReceived = 4201;
    public const int ClientEventRejected = 4301;

    /// <summary>What a frame may hold around its data: JSON escaping can double a string, plus the event and channel names.</summary>
    private const int FrameOverheadBytes = 4096;

    private readonly IPusherTransport _transport;
    private readonly PusherBroker _broker;
    private readonly IngressNode _node;
    private readonly PusherOptions _options;
    private readonly ILogger _logger;
    private readonly IFrameSender _sender;
    private readonly Dictionary<string, PusherSubscriptionSink> _channels = new(StringComparer.Ordinal);
    private readonly int _maxFrameBytes;
    private readonly TokenBucket _clientEvents;
    private RelayPrincipal _principal;
    private long _keysVersion;
    private long _lastInputTicks;
    private long _pingSentTicks;
    private long _closeDeadlineTicks = long.MaxValue;
    private int _closing;
    private int _closeCode = (int)WebSocketCloseStatus.NormalClosure;
    private string? _closeReason;
    private string? _userId;
    private PusherUserWatch? _userWatch;
    private string? _onlineAs;
    private PusherWatchlist? _watchlist;

    public PusherConnection(IPusherTransport transport, IFrameSender sender, PusherBroker broker, RelayPrincipal principal)
    {
        _transport = transport;
        _sender = sender;
        _broker = broker;
        _node = broker.Node;
        _options = broker.Options;
        _logger = broker.Logger;
        _principal = principal;
        _keysVersion = _node.Authenticator.KeysVersion;
        _maxFrameBytes = (2 * broker.MaxEventBytes) + FrameOverheadBytes;
        _lastInputTicks = _node.Time.GetUtcNow().UtcTicks;
        // Pusher's limit: a burst of ClientEventsPerSecond, then that many a second.
        _clientEvents = new TokenBucket(_options.ClientEventsPerSecond, _options.ClientEventsPerSecond, _node.Time.GetTimestamp());
        SocketId = PusherBroker.NewSocketId();
        ConnectionId = "p-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
    }

    public string ConnectionId { get; }

    /// <summary>The Pusher socket id, told to the client in <c>pusher:connection_established</c>.</summary>
    public string SocketId { get; }

    /// <summary>The largest frame a client may send: twice <c>MaxEventBytes</c> (JSON escaping) plus the names around it.</summary>
    public int MaxFrameBytes => _maxFrameBytes;

    /// <summary>Whether the connection is closing: its transport stops handing it frames.</summary>
    public bool IsClosing => Volatile.Read(ref _closing) != 0;

    private string App => _principal.AppId;

    private string KeyName => _principal.AppId + "." + _principal.KeyId;

    /// <summary>Serves the connection until it ends.</summary>
    public async Task RunAsync()
    {
        _node.Register(this);
        Enqueue(PusherFrames.Event("pusher:connection_established", null, (SocketId, _options.ActivityTimeoutSeconds), static (w, s) =>
        {
            w.WriteString("socket_id"u8, s.SocketId);
            w.WriteNumber("activity_timeout"u8, s.ActivityTimeoutSeconds);
        }));
        try
        {
            await _transport.ReceiveAsync(this).ConfigureAwait(false);
        }
        finally
        {
            try
            {
                await CloseAsync().ConfigureAwait(false);
                await _sender.DrainAsync().WaitAsync(_node.Options.CloseTimeout).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                Abort();
            }
            finally
            {
                _node.Unregister(this);
                _sender.Discard();
            }
        }
    }

    /// <summary>Refuses a connection before it is served: <c>pusher:error</c> with <paramref name="code"/>, then the close with the same code.</summary>
    public static async Task RefuseAsync(WebSocket socket, int code, string message)
    {
        try
        {
            await socket.SendAsync(PusherFrames.Error(code, message), WebSocketMessageType.Text, true, CancellationToken.None).ConfigureAwait(false);
            await socket.CloseOutputAsync((WebSocketCloseStatus)code, CloseReason(message), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is WebSocketException or TimeoutException or ObjectDisposedException or IOException or OperationCanceledException)
        {
            socket.Abort();
        }
    }

    // RFC 6455 §5.5: a close frame's reason fits in 123 bytes (a longer one throws); pusher:error before it has it whole.
    private static string CloseReason(string message)
    {
        const int MaxBytes = 123;
        var length = message.Length;
        while (System.Text.Encoding.UTF8.GetByteCount(message.AsSpan(0, length)) > MaxBytes)
        {
            length--;
        }

        if (length > 0 && length < message.Length && char.IsHighSurrogate(message[length - 1]))
        {
            length--;
        }

        return message[..length];
    }

    /// <summary>Queues a delivery (called by the node's dispatch, any thread).</summary>
    public void Deliver(RelayMessage message, PusherSubscriptionSink sink)
    {
        if (Volatile.Read(ref _closing) != 0 || PusherBroker.Excludes(message, SocketId))
        {
            return;
        }

        if (message.PresenceAction is { } action)
        {
            // Members join and leave presence channels only, never for the connection's own user (Pusher sends a member's
            // own connection nothing: it is in its subscription_succeeded), and an update has no Pusher event.
            if (sink.Kind != PusherChannelKind.Presence || action is not ("enter" or "leave") || message.ClientId == sink.UserId)
            {
                return;
            }
        }
        else if (sink.Kind == PusherChannelKind.User && message.Name == PusherBroker.TerminateEvent)
        {
            // terminate_connections' message, for the connections' own watches (PusherUserWatch).
            return;
        }
        else
        {
            sink.Delivered = true;
        }

        Enqueue(_broker.FrameOf(message));
    }

    public void Abort() => _transport.Abort();

    /// <inheritdoc />
    public void Drain(Relay.Core.Protocol.RelayError error) => Close(ReconnectNow, "node draining: reconnect (another node takes the connection)");

    /// <summary>Closes the connection for <c>terminate_connections</c>.</summary>
    public void Terminate() => Close(Unauthorized, "connection terminated by the app's server", PusherFrames.Error(Unauthorized, "connection terminated by the app's server"));

    public void CheckDeadlines(DateTimeOffset now)
    {
        var ticks = now.UtcTicks;
        if (ticks >= Interlocked.Read(ref _closeDeadlineTicks))
        {
            Abort();
            return;
        }

        _sender.Sweep();
        var pingSent = Interlocked.Read(ref _pingSentTicks);
        if (pingSent != 0)
        {
            if (ticks - pingSent > TimeSpan.TicksPerSecond * _options.PongTimeoutSeconds)
            {
                LogPongTimeout(_logger, ConnectionId, _options.PongTimeoutSeconds);
                Close(PongNotReceived, "Pong reply not received");
            }

            return;
        }

        if (ticks - Interlocked.Read(ref _lastInputTicks) > TimeSpan.TicksPerSecond * _options.ActivityTimeoutSeconds)
        {
            Interlocked.Exchange(ref _pingSentTicks, ticks);
            Enqueue(PingFrame);
        }
    }

    public void CheckCredentials(long keysVersion)
    {
        if (Volatile.Read(ref _keysVersion) == keysVersion || Volatile.Read(ref _closing) != 0)
        {
            return;
        }

        var result = _node.Authenticator.Recheck(_principal);
        Volatile.Write(ref _keysVersion, keysVersion);
        if (!result.Succeeded)
        {
            LogKeyRevoked(_logger, ConnectionId, KeyName);
            Close(Unauthorized, "the app key was removed or its secret changed", PusherFrames.Error(Unauthorized, "the app key was removed or its secret changed"));
            return;
        }

        if (!ReferenceEquals(result.Principal, _principal))
        {
            _principal = result.Principal;
            _ = DropForbiddenAsync();
        }
    }

    private static readonly byte[] PingFrame = PusherFrames.Event("pusher:ping", null, "{}");

    private static readonly byte[] PongFrame = PusherFrames.Event("pusher:pong", null, "{}");

    /// <summary>Queues a frame; a client that lets more than the node's send budget wait is cut as a slow consumer (4100: reconnect after a while).</summary>
    private void Enqueue(byte[] frame)
    {
        if (!_sender.TrySend(frame) && Volatile.Read(ref _closing) == 0)
        {
            LogSlowConsumer(_logger, ConnectionId, _node.Options.SendQueueBytes);
            _node.CountSlowConsumer();
            Close(OverCapacity, "disconnected as a slow consumer: reconnect", dropQueued: true);
        }
    }

    /// <summary>Ends the connection: <paramref name="finalFrame"/> after what is queued, then the close with <paramref name="code"/>; aborted if that takes longer than <c>Relay:Ingress:CloseTimeout</c>.</summary>
    private void Close(int code, string? reason, byte[]? finalFrame = null, bool dropQueued = false)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }

        _closeCode = code;
        _closeReason = reason;
        Interlocked.Exchange(ref _closeDeadlineTicks, (_node.Time.GetUtcNow() + _node.Options.CloseTimeout).UtcTicks);
        // After what is queued (or instead of it, for a slow consumer): the final frame, then the close with the code.
        // The read loop is not cancelled (that would abort the WebSocket before the close frame goes): it ends when the
        // client answers the close, or the node aborts the connection at the deadline.
        _sender.SendLast(finalFrame ?? ReadOnlyMemory<byte>.Empty, dropQueued, (WebSocketCloseStatus)code, reason);
    }

    /// <summary>The client showed it is there without a frame (an HTTP transport's heartbeat or poll).</summary>
    public void Touch()
    {
        Interlocked.Exchange(ref _lastInputTicks, _node.Time.GetUtcNow().UtcTicks);
        Interlocked.Exchange(ref _pingSentTicks, 0);
    }

    /// <summary>
    /// One frame from the client, whichever transport carried it: handled in order (the transport awaits it before the
    /// next). <paramref name="tooLarge"/>: it was over <see cref="MaxFrameBytes"/> and dropped (refused once with 4301).
    /// </summary>
    public ValueTask ReceivedAsync(ReadOnlyMemory<byte> frame, bool tooLarge = false)
    {
        Touch();
        if (tooLarge || frame.Length > _maxFrameBytes)
        {
            Enqueue(PusherFrames.Error(ClientEventRejected, $"frame larger than {_maxFrameBytes} bytes (event data is limited to {_broker.MaxEventBytes} bytes)"));
            return ValueTask.CompletedTask;
        }

        if (frame.IsEmpty)
        {
            Enqueue(PusherFrames.Error(null, "malformed frame: send one JSON object with 'event'"));
            return ValueTask.CompletedTask;
        }

        return HandleAsync(frame);
    }

    /// <summary>The transport's reading ended with an error (the client went away).</summary>
    public void ReceiveEnded(string reason) => LogReceiveEnded(_logger, ConnectionId, reason);

    private async ValueTask HandleAsync(ReadOnlyMemory<byte> frame)
    {
        string? eventName;
        JsonElement data;
        string? channel;
        var document = PusherJson.TryParse(frame);
        if (document is null)
        {
            Enqueue(PusherFrames.Error(null, "malformed frame: send one JSON object with 'event' (UTF-8 text, no lone surrogates)"));
            return;
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("event"u8, out var e) || e.ValueKind != JsonValueKind.String)
            {
                Enqueue(PusherFrames.Error(null, "malformed frame: send one JSON object with 'event'"));
                return;
            }

            eventName = e.GetString()!;
            data = root.TryGetProperty("data"u8, out var d) ? d.Clone() : default;
            channel = root.TryGetProperty("channel"u8, out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
        }

        try
        {
            switch (eventName)
            {
                case "pusher:ping":
                    Enqueue(PongFrame);
                    return;
                case "pusher:pong":
                    return;
                case "pusher:subscribe":
                    await SubscribeAsync(DataObject(data)).ConfigureAwait(false);
                    return;
                case "pusher:unsubscribe":
                    await UnsubscribeAsync(DataObject(data)).ConfigureAwait(false);
                    return;
                case "pusher:signin":
                    await SignInAsync(DataObject(data)).ConfigureAwait(false);
                    return;
                default:
                    if (eventName.StartsWith("client-", StringComparison.Ordinal))
                    {
                        await ClientEventAsync(eventName, channel, data).ConfigureAwait(false);
                        return;
                    }

                    Enqueue(PusherFrames.Error(null, $"unknown event '{eventName}': clients send pusher:subscribe, pusher:unsubscribe, pusher:ping, pusher:signin or client-* events"));
                    return;
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
            Enqueue(PusherFrames.Error(null, "internal error; the request was not completed"));
        }
    }

    /// <summary>A frame's data as an object: pusher-js sends one; some clients send it JSON-encoded as a string.</summary>
    private static JsonElement DataObject(JsonElement data)
    {
        if (data.ValueKind == JsonValueKind.String)
        {
            using var inner = PusherJson.TryParse(data.GetString()!);
            return inner?.RootElement.Clone() ?? default;
        }

        return data;
    }

    private static string? StringOf(JsonElement data, string name) =>
        data.ValueKind == JsonValueKind.Object && data.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    [LoggerMessage(EventId = 1500, Level = LogLevel.Debug, Message = "Pusher connection {ConnectionId} receive ended: {Reason}")]
    private static partial void LogReceiveEnded(ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 1502, Level = LogLevel.Information, Message = "Pusher connection {ConnectionId} closed: no answer to its ping within {Seconds} s (Relay:Pusher:PongTimeoutSeconds)")]
    private static partial void LogPongTimeout(ILogger logger, string connectionId, int seconds);

    [LoggerMessage(EventId = 1503, Level = LogLevel.Information, Message = "Pusher connection {ConnectionId} cut as a slow consumer (its {Bytes}-byte send budget was spent)")]
    private static partial void LogSlowConsumer(ILogger logger, string connectionId, long bytes);

    [LoggerMessage(EventId = 1504, Level = LogLevel.Information, Message = "Pusher connection {ConnectionId} disconnected: key {Key} was removed or its secret changed")]
    private static partial void LogKeyRevoked(ILogger logger, string connectionId, string key);

    [LoggerMessage(EventId = 1505, Level = LogLevel.Error, Message = "Pusher connection {ConnectionId}: a request failed")]
    private static partial void LogRequestFailed(ILogger logger, Exception exception, string connectionId);
}
