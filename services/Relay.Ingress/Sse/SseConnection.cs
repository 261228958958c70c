using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;
using Relay.Core.Auth;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Ingress.Realtime;
using Relay.Ingress.Sending;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Sse;

/// <summary>
/// One Server-Sent Events stream: the same JSON objects as the WebSocket, <c>id:</c> cursors covering every channel,
/// comment heartbeats from the node's one loop, and the same bounded queue and slow-consumer policy.
/// </summary>
internal sealed partial class SseConnection : IMessageSink, INodeConnection
{
    private static readonly byte[] Heartbeat = ": heartbeat\n\n"u8.ToArray();

    /// <summary>Bytes written into the response between two flushes (as the WebSocket coalesces its sends).</summary>
    private const int FlushBytes = 64 * 1024;

    private readonly HttpContext _context;
    private readonly IngressNode _node;
    private readonly ILogger _logger;
    private readonly SendQueue<SseItem> _queue;
    private readonly Dictionary<string, (string Epoch, long Seq)> _positions = new(StringComparer.Ordinal);
    private readonly List<Subscription> _subscriptions = [];
    private readonly CancellationTokenSource _aborted;
    private volatile RelayPrincipal _principal;
    private IReadOnlyList<string> _channels = [];

    // The key set version _principal was last checked against; -1: never (see RealtimeConnection).
    private long _keysVersion = -1;
    private readonly RepeatFilter _repeats = new();
    private long _lastWriteTicks;
    private int _closing;

    public SseConnection(HttpContext context, RelayPrincipal principal, IngressNode node, ILogger logger)
    {
        _context = context;
        _principal = principal;
        _node = node;
        _logger = logger;
        _aborted = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, node.Stopping);
        ConnectionId = "s-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
        _queue = new SendQueue<SseItem>(static item => item.Frame.Length + SseItem.FieldBytes, metrics: node.Metrics);

        // A client that goes away, or a node that stops, ends the write loop's wait.
        _aborted.Token.Register(static queue => ((SendQueue<SseItem>)queue!).Complete(), _queue);
        _lastWriteTicks = node.Time.GetUtcNow().UtcTicks;
    }

    public string ConnectionId { get; }

    public async Task RunAsync(IReadOnlyList<string> channels, Dictionary<string, (string Epoch, long Seq)> resume)
    {
        var response = _context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        _channels = channels;
        _node.Register(this);
        try
        {
            foreach (var channel in channels)
            {
                long? since = resume.TryGetValue(channel, out var at) ? at.Seq : null;
                var subscription = await _node.StartSubscriptionAsync(this, _principal.AppId, channel, since is null ? null : at.Epoch, since, rewind: null, (name, position, _) =>
                {
                    if (position is { } p)
                    {
                        _positions[name] = (p.Epoch, p.Seq);
                    }
                }).ConfigureAwait(false);
                _subscriptions.Add(subscription);
            }

            await WriteLoopAsync().ConfigureAwait(false);
        }
        finally
        {
            foreach (var subscription in _subscriptions)
            {
                await _node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
            }

            _node.Unregister(this);
            _queue.Complete();
            _queue.Clear();
            _aborted.Dispose();
        }
    }

    /// <inheritdoc />
    public void SendLive(RelayMessage message)
    {
        // A stream of a channel and of a pattern matching it gets the message once.
        if (!_repeats.IsRepeat(message))
        {
            Send(message);
        }
    }

    /// <inheritdoc />
    public void PatternAdded() => _repeats.PatternAdded();

    /// <inheritdoc />
    public void Send(RelayMessage message)
    {
        // Everything not yet written to the response counts against the connection's budget in bytes.
        if (!_queue.TryWrite(new SseItem(message, ServerFrames.PushFrame(message)), _node.Options.SendQueueBytes) && Interlocked.Exchange(ref _closing, 1) == 0)
        {
            LogSlowConsumer(_logger, ConnectionId);
            _node.CountSlowConsumer();
            _queue.Clear();

            Close(new RelayError(ErrorCodes.SlowConsumer, "disconnected as a slow consumer: reconnect with Last-Event-ID to resume"), reconnect: true);
        }
    }

    /// <inheritdoc />
    public void Lost(Subscription subscription)
    {
        if (Interlocked.Exchange(ref _closing, 1) == 0)
        {
            Close(new RelayError(ErrorCodes.Unavailable, $"messages of '{subscription.Channel}' were lost before reaching this node and history no longer holds them: reconnect with Last-Event-ID"), reconnect: true);
        }
    }

    public void CheckDeadlines(DateTimeOffset now)
    {
        if (_principal.ExpiresAt is { } expiresAt && now >= expiresAt + _node.TokenGrace && Interlocked.Exchange(ref _closing, 1) == 0)
        {
            Close(new RelayError(ErrorCodes.TokenExpired, "token expired: reconnect with a new token and Last-Event-ID"), reconnect: true);
            return;
        }

        if (now.UtcTicks - Interlocked.Read(ref _lastWriteTicks) >= TimeSpan.FromMilliseconds(_node.Options.HeartbeatMs).Ticks)
        {
            _queue.TryWrite(new SseItem(null, Heartbeat), _node.Options.SendQueueBytes);
        }

        _queue.TrimIfUnused();
    }

    /// <summary>
    /// When the keys changed: a removed key ends the stream with 40102; capabilities that no longer allow one of its channels
    /// end it with 40300 naming the channel. A stream's channels are fixed by its URL, so it is not left following fewer than
    /// it asked for; reconnecting with the same URL is refused with the same code.
    /// </summary>
    public void CheckCredentials(long keysVersion)
    {
        if (Interlocked.Read(ref _keysVersion) == keysVersion || Volatile.Read(ref _closing) != 0)
        {
            return;
        }

        var result = _node.Authenticator.Recheck(_principal);
        Interlocked.Exchange(ref _keysVersion, keysVersion);
        if (!result.Succeeded)
        {
            End(result.Error);
            return;
        }

        if (ReferenceEquals(result.Principal, _principal))
        {
            return;
        }

        foreach (var channel in _channels)
        {
            if (!result.Principal.Capabilities.Allows(channel, Operations.Subscribe))
            {
                End(new RelayError(ErrorCodes.Forbidden, $"the credentials no longer allow 'subscribe' on channel '{channel}'"));
                return;
            }
        }

        _principal = result.Principal;

        void End(RelayError error)
        {
            if (Interlocked.Exchange(ref _closing, 1) == 0)
            {
                LogAccessEnded(_logger, ConnectionId, error.Code);
                Close(error, reconnect: false);
            }
        }
    }

    /// <inheritdoc />
    public void Drain(RelayError error) => Close(error, reconnect: true);

    public void Abort()
    {
        try
        {
            _aborted.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Already finished.
        }
    }

    private void Close(RelayError error, bool reconnect)
    {
        using (var frame = new FrameBuilder())
        {
            ServerFrames.WriteDisconnect(frame.Writer, error, reconnect);
            var json = frame.ToArray();
            _queue.TryWrite(new SseItem(null, [.. "event: disconnect\ndata: "u8, .. json, .. "\n\n"u8]));
        }

        _queue.Complete();
    }

    private async Task WriteLoopAsync()
    {
        var output = _context.Response.BodyWriter;
        var token = _aborted.Token;
        try
        {
            // Tell EventSource how soon to reconnect, and open the stream at once so proxies pass it through.
            Write(output, "retry: 2000\n: connected\n\n"u8);
            await output.FlushAsync(token).ConfigureAwait(false);
            while (await _queue.WaitToReadAsync().ConfigureAwait(false))
            {
                // At most FlushBytes into the response before its flush waits for the client: the rest stays in the
                // queue, where it counts against the budget, instead of piling up in the response's pipe.
                var written = 0;
                while (written < FlushBytes && _queue.TryRead(out var item))
                {
                    written += item.Frame.Length;
                    if (item.Message is not { } message)
                    {
                        Write(output, item.Frame);
                    }
                    else if (message.PresenceAction is not null)
                    {
                        Write(output, "event: presence\n"u8);
                        WriteData(output, item.Frame);
                    }
                    else
                    {
                        if (_positions.ContainsKey(message.Channel))
                        {
                            _positions[message.Channel] = (message.Epoch, message.Seq);
                        }

                        Write(output, "event: message\nid: "u8);
                        Write(output, Encoding.UTF8.GetBytes(SseCursor.Encode(_positions)));
                        Write(output, "\n"u8);
                        WriteData(output, item.Frame);
                    }
                }

                Interlocked.Exchange(ref _lastWriteTicks, _node.Time.GetUtcNow().UtcTicks);
                await output.FlushAsync(token).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
        {
            LogEnded(_logger, ConnectionId, ex.Message);
        }
    }

    /// <summary>
    /// Writes a frame as the event's data and ends the event. Payloads are compacted on the way in
    /// (<see cref="CompactJson"/>), so a frame is one line; should one still hold a line break (a message stored
    /// before that), each line gets its own <c>data:</c> field, which readers join back with a line feed.
    /// </summary>
    private static void WriteData(System.IO.Pipelines.PipeWriter output, ReadOnlySpan<byte> frame)
    {
        while (true)
        {
            Write(output, "data: "u8);
            var end = frame.IndexOfAny((byte)'\r', (byte)'\n');
            if (end < 0)
            {
                Write(output, frame);
                Write(output, "\n\n"u8);
                return;
            }

            Write(output, frame[..end]);
            Write(output, "\n"u8);
            frame = frame[(frame[end] == (byte)'\r' && end + 1 < frame.Length && frame[end + 1] == (byte)'\n' ? end + 2 : end + 1)..];
        }
    }

    private static void Write(System.IO.Pipelines.PipeWriter output, ReadOnlySpan<byte> bytes)
    {
        var span = output.GetSpan(bytes.Length);
        bytes.CopyTo(span);
        output.Advance(bytes.Length);
    }

    internal readonly record struct SseItem(RelayMessage? Message, byte[] Frame)
    {
        /// <summary>What an event adds around its JSON (<c>event:</c>, <c>id:</c>, <c>data:</c>), counted for its share of the budget.</summary>
        public const int FieldBytes = 64;
    }

    [LoggerMessage(EventId = 1200, Level = LogLevel.Information, Message = "SSE stream {ConnectionId} cut as a slow consumer")]
    private static partial void LogSlowConsumer(ILogger logger, string connectionId);

    [LoggerMessage(EventId = 1201, Level = LogLevel.Debug, Message = "SSE stream {ConnectionId} ended: {Reason}")]
    private static partial void LogEnded(ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 1210, Level = LogLevel.Information, Message = "SSE stream {ConnectionId} ended with {Code}: its key was removed or changed")]
    private static partial void LogAccessEnded(ILogger logger, string connectionId, int code);
}
