using System.Security.Cryptography;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Grpc.V1;
using Relay.Ingress.Realtime;
using Relay.Ingress.Sending;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Grpc;

/// <summary>
/// One <c>Realtime.Connect</c> stream: the WebSocket protocol's connection over gRPC. A read loop takes the client's
/// frames in order (publishes pipelined to routing as a WebSocket's are); a write loop sends what is queued, replies and
/// deliveries alike, from one queue bounded in bytes (<c>Relay:Ingress:SendQueueBytes</c>): a client that does not read
/// fills HTTP/2's flow-control window, the write loop waits, the queue grows, and past the budget the connection is
/// sent <c>disconnect</c> 50301 and the call ends UNAVAILABLE, as a slow WebSocket reader is cut. The node's
/// once-a-second loop checks token expiry, key changes and the close deadline.
/// </summary>
internal sealed partial class GrpcConnection : INodeConnection, IMessageSink
{
    /// <summary>Publishes one stream may have waiting for routing's answer (as a WebSocket connection may).</summary>
    private const int MaxPipelinedPublishes = 64;

    /// <summary>Bytes written with gRPC's buffer hint before a flush, so one flush carries a burst of deliveries.</summary>
    private const int FlushBytes = 64 * 1024;

    private static readonly WriteOptions Buffered = new(WriteFlags.BufferHint);

    private readonly IngressNode _node;
    private readonly IRelayAuthenticator _authenticator;
    private readonly ILogger _logger;
    private readonly HttpContext _http;
    private readonly SendQueue<GrpcOutbound> _queue;
    private readonly CancellationTokenSource _closed = new();

    // Completed when reading stops (a disconnect, the call aborted): the stream ends then, whether or not a pending
    // read of the client's next frame has noticed yet (a client that keeps its side open and idle sends none).
    private readonly TaskCompletionSource _stopReading = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Dictionary<string, Subscription> _subscriptions = new(StringComparer.Ordinal);
    private readonly TokenBucket _publishRate;
    private readonly TokenBucket _readRate;
    private HashSet<string>? _presence;
    private volatile RelayPrincipal _principal;
    private long _keysVersion = -1;
    private readonly RepeatFilter _repeats = new();
    private int _closing;
    private long _closeDeadlineTicks = long.MaxValue;

    // Set when the server ends the stream (a disconnect): the call's status carries it once the stream is done.
    private volatile RelayError? _ending;

    public GrpcConnection(IngressNode node, RelayPrincipal principal, long keysVersion, HttpContext http, ILogger logger)
    {
        _node = node;
        _authenticator = node.Authenticator;
        _principal = principal;
        _keysVersion = keysVersion;
        _http = http;
        _logger = logger;
        _queue = new SendQueue<GrpcOutbound>(GrpcOutbound.Size, metrics: node.Metrics);
        var options = node.Options;
        var now = node.Time.GetTimestamp();
        _publishRate = new TokenBucket(options.PublishRatePerSecond, options.PublishBurst == 0 ? options.PublishRatePerSecond * 2 : options.PublishBurst, now);
        var readBurst = options.ReadBurst == 0 ? Math.Max(options.ReadRatePerSecond * 2, options.MaxSubscriptionsPerConnection) : options.ReadBurst;
        _readRate = new TokenBucket(options.ReadRatePerSecond, readBurst, now);
        ConnectionId = "g-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
    }

    public string ConnectionId { get; }

    private string App => _principal.AppId;

    /// <summary>Serves the stream until the client ends it, the server disconnects it, or the call is cancelled.</summary>
    public async Task RunAsync(IAsyncStreamReader<ClientFrame> requests, IServerStreamWriter<ServerFrame> responses, CancellationToken callAborted)
    {
        _node.Register(this);
        using var aborted = callAborted.Register(static state => ((GrpcConnection)state!).StopReading(), this);
        Enqueue(new ServerFrame
        {
            Connected = new Connected
            {
                ConnectionId = ConnectionId,
                ClientId = _principal.ClientId ?? string.Empty,
                HeartbeatMs = 0,
                MaxMessageBytes = _node.Options.MaxMessageBytes,
            },
        });
        var writing = WriteLoopAsync(responses);
        var reading = ReadLoopAsync(requests);
        try
        {
            await Task.WhenAny(reading, _stopReading.Task).ConfigureAwait(false);
        }
        finally
        {
            try
            {
                await CloseAsync().ConfigureAwait(false);
                await writing.WaitAsync(_node.Options.CloseTimeout).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                Abort();
            }
            finally
            {
                _node.Unregister(this);
                _queue.Clear();

                // A read still pending ends with the call; the token it holds is disposed after it.
                _ = reading.ContinueWith(static (_, state) => ((CancellationTokenSource)state!).Dispose(), _closed, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }

        if (_ending is { } ending)
        {
            throw GrpcErrors.ToRpcException(ending);
        }
    }

    /// <inheritdoc />
    public void Send(RelayMessage message) => Enqueue(GrpcOutbound.Of(message));

    /// <inheritdoc />
    public void SendLive(RelayMessage message)
    {
        // A stream subscribed to a channel and to a pattern matching it gets the message once.
        if (!_repeats.IsRepeat(message))
        {
            Enqueue(GrpcOutbound.Of(message));
        }
    }

    /// <inheritdoc />
    public void PatternAdded() => _repeats.PatternAdded();

    /// <inheritdoc />
    public void Lost(Subscription subscription) =>
        Disconnect(new RelayError(ErrorCodes.Unavailable, $"messages of '{subscription.Channel}' were lost before reaching this node and history no longer holds them: reconnect and subscribe with 'since' (the reply says recovered: false)"), reconnect: true, dropQueued: false);

    /// <inheritdoc />
    public void Drain(RelayError error) => Disconnect(error, reconnect: true, dropQueued: false);

    /// <inheritdoc />
    public void Abort()
    {
        try
        {
            _http.Abort();
        }
        catch (ObjectDisposedException)
        {
            // Gone already.
        }
    }

    /// <inheritdoc />
    public void CheckDeadlines(DateTimeOffset now)
    {
        if (now.UtcTicks >= Interlocked.Read(ref _closeDeadlineTicks))
        {
            Abort();
            return;
        }

        _queue.TrimIfUnused();
        if (_principal.ExpiresAt is { } expiresAt && now >= expiresAt + _node.TokenGrace)
        {
            Disconnect(new RelayError(ErrorCodes.TokenExpired, "token expired: reconnect with a new token, or send an auth frame with a new token before expiry"), reconnect: true, dropQueued: false);
        }
    }

    private void Enqueue(ServerFrame frame) => Enqueue(GrpcOutbound.Of(frame));

    private void Enqueue(GrpcOutbound item)
    {
        var budget = _node.Options.SendQueueBytes;
        if (!_queue.TryWrite(item, budget) && Volatile.Read(ref _closing) == 0)
        {
            LogSlowConsumer(_logger, ConnectionId, budget);
            _node.CountSlowConsumer();
            Disconnect(new RelayError(ErrorCodes.SlowConsumer, $"disconnected as a slow consumer: more than {budget} bytes waited to be sent; reconnect and resume with 'since'"), reconnect: true, dropQueued: true);
        }
    }

    private void Reply(string reference, ServerFrame frame)
    {
        frame.Ref = reference;
        Enqueue(frame);
    }

    private void ReplyError(string reference, RelayError error, string? channel = null) =>
        Reply(reference, new ServerFrame { Error = GrpcErrors.ToFrame(error, channel) });

    /// <summary>
    /// Ends the stream from the server: <c>disconnect</c> with <paramref name="error"/> after what is queued (or instead
    /// of it for a slow consumer, whose backlog is what is wrong), then the call ends with the error's status. The node
    /// aborts the call if it has not ended within <c>Relay:Ingress:CloseTimeout</c> (a reader that reads nothing more).
    /// </summary>
    private void Disconnect(RelayError error, bool reconnect, bool dropQueued)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }

        _ending = error;
        Interlocked.Exchange(ref _closeDeadlineTicks, (_node.Time.GetUtcNow() + _node.Options.CloseTimeout).UtcTicks);
        if (dropQueued)
        {
            _queue.Clear();
        }

        _queue.TryWrite(GrpcOutbound.Of(new ServerFrame { Disconnect = new Disconnect { Code = error.Code, Message = error.Message, Reconnect = reconnect } }));
        _queue.Complete();
        StopReading();
    }

    private void StopReading()
    {
        _stopReading.TrySetResult();
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The stream finished meanwhile.
        }
    }

    private async Task ReadLoopAsync(IAsyncStreamReader<ClientFrame> requests)
    {
        Queue<Task>? publishing = null;
        try
        {
            while (Volatile.Read(ref _closing) == 0 && await requests.MoveNext(_closed.Token).ConfigureAwait(false))
            {
                if (Volatile.Read(ref _closing) != 0)
                {
                    break;
                }

                var frame = requests.Current;
                var handling = HandleAsync(frame);
                if (handling.IsCompleted)
                {
                    await handling.ConfigureAwait(false);
                    continue;
                }

                if (frame.RequestCase == ClientFrame.RequestOneofCase.Publish)
                {
                    // On a networked bus the publish is on the wire in order; the next may follow before its answer.
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
        catch (RpcException ex)
        {
            // The framework refused a frame (larger than Relay:Grpc:MaxReceiveMessageBytes, not a ClientFrame: GrpcBinding's
            // marshaller): the call ends with its status, as gRPC clients expect; nothing else of the stream can be read.
            LogReceiveEnded(_logger, ConnectionId, ex.Status.Detail);
            if (Volatile.Read(ref _closing) == 0)
            {
                var code = ex.StatusCode == StatusCode.ResourceExhausted ? ErrorCodes.MessageTooLarge : ErrorCodes.BadRequest;
                Disconnect(new RelayError(code, ex.Status.Detail), reconnect: false, dropQueued: false);
            }
        }
        catch (InvalidDataException ex)
        {
            // The framework could not read a frame's gRPC framing (a compressed flag other than 0 or 1, a message cut
            // short): the call ends INVALID_ARGUMENT, where the read loop faulted and the call ended OK (GrpcFuzzTests).
            LogReceiveEnded(_logger, ConnectionId, ex.Message);
            if (Volatile.Read(ref _closing) == 0)
            {
                Disconnect(RelayError.BadRequest($"a frame's gRPC framing is broken: {ex.Message}"), reconnect: false, dropQueued: false);
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or InvalidOperationException or ObjectDisposedException)
        {
            LogReceiveEnded(_logger, ConnectionId, ex.Message);
        }
        finally
        {
            if (publishing is not null)
            {
                await DrainAsync(publishing, 0).ConfigureAwait(false);
            }
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

    private async Task WriteLoopAsync(IServerStreamWriter<ServerFrame> responses)
    {
        try
        {
            while (await _queue.WaitToReadAsync().ConfigureAwait(false))
            {
                var written = 0;
                while (_queue.TryRead(out var item))
                {
                    var frame = item.Frame ?? GrpcFrames.ToPush(item.Message!);
                    written += item.Bytes;

                    // Buffered while more is queued: the last frame of a burst (or every 64 KiB) flushes.
                    var flush = written >= FlushBytes || _queue.Count == 0;
                    responses.WriteOptions = flush ? null : Buffered;
                    await responses.WriteAsync(frame).ConfigureAwait(false);
                    if (flush)
                    {
                        written = 0;
                    }
                }
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or InvalidOperationException or ObjectDisposedException)
        {
            LogSendEnded(_logger, ConnectionId, ex.Message);
            StopReading();
        }
    }

    [LoggerMessage(EventId = 1500, Level = LogLevel.Debug, Message = "gRPC connection {ConnectionId} receive ended: {Reason}")]
    private static partial void LogReceiveEnded(ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 1501, Level = LogLevel.Debug, Message = "gRPC connection {ConnectionId} send ended: {Reason}")]
    private static partial void LogSendEnded(ILogger logger, string connectionId, string reason);

    [LoggerMessage(EventId = 1502, Level = LogLevel.Information, Message = "gRPC connection {ConnectionId} cut as a slow consumer (its {Bytes}-byte send budget was spent)")]
    private static partial void LogSlowConsumer(ILogger logger, string connectionId, long bytes);

    [LoggerMessage(EventId = 1503, Level = LogLevel.Error, Message = "gRPC connection {ConnectionId}: a request failed")]
    private static partial void LogRequestFailed(ILogger logger, Exception exception, string connectionId);

    [LoggerMessage(EventId = 1504, Level = LogLevel.Information, Message = "gRPC connection {ConnectionId} disconnected: key {AppId}.{KeyId} was removed or its secret changed")]
    private static partial void LogKeyRevoked(ILogger logger, string connectionId, string appId, string keyId);
}
