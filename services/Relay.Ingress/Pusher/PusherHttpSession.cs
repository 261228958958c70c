using System.Buffers;
using System.IO.Pipelines;
using System.Net.WebSockets;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Relay.Ingress.Sending;

namespace Relay.Ingress.Pusher;

/// <summary>
/// One Pusher connection carried over HTTP, as pusher-js's fallbacks speak it (SockJS's framing): the client names the
/// session in the path (<c>/pusher/app/{key}/{server}/{session}/…</c>), reads the server's frames from an
/// <c>xhr_streaming</c> response held open or from <c>xhr</c> polls, and posts its own to <c>xhr_send</c>. Both halves
/// of the carrier: as <see cref="IPusherTransport"/> it hands the posted frames to the connection in order; as
/// <see cref="IFrameSender"/> it keeps what the connection sends, bounded by the node's send budget as a WebSocket's
/// queue is, until a stream or poll takes it. Lines out: <c>o</c> (open), <c>a[…]</c> (frames, each as a JSON string),
/// <c>h</c> (heartbeat), <c>c[code,"reason"]</c> (close). One reader at a time: a new stream or poll replaces the one
/// before, and a replaced one takes no frame from the queue after that (<c>_writer</c>). A stream stops writing at
/// pusher-js's response limit (<see cref="ResponseChars"/>) and is held until the client replaces it, so the response
/// pusher-js aborts carries nothing it has not read. With none open for <c>Relay:Pusher:HttpSessionTimeoutSeconds</c>
/// the session ends.
/// </summary>
internal sealed partial class PusherHttpSession : IPusherTransport, IFrameSender
{
    /// <summary>Frames posted and not yet handled a session holds at most; a further <c>xhr_send</c> waits (as a WebSocket's reader would stop reading).</summary>
    private const int InboundFrames = 16;

    /// <summary>One <c>a[…]</c> line stays below this, so a backlog goes out in pieces the client parses as they come.</summary>
    private const int LineBytes = 64 * 1024;

    /// <summary>
    /// pusher-js's response limit (<c>MAX_BUFFER_LENGTH</c> in its <c>http_request.ts</c>, 256 K characters of
    /// <c>responseText</c>): at the first line end past it, it aborts the stream and opens another. Ending the response
    /// ourselves earlier (SockJS's 128 KiB) does not work with pusher-js: a finished stream is a lost connection to it
    /// (<c>xhr_streaming</c>'s <c>onFinished</c> closes with 1006), so the stream stops writing at that same line end
    /// instead and waits for the abort; nothing written after the client decided to abort, nothing lost.
    /// </summary>
    private const int ResponseChars = 256 * 1024;

    private static readonly JsonWriterOptions LineOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly Lock _gate = new();

    /// <summary>Held by the reader writing the queue's frames into its response, and by a new reader taking over: a replaced reader dequeues nothing more. Taken before <see cref="_gate"/>, never inside it.</summary>
    private readonly Lock _writer = new();
    private readonly SendQueue<ReadOnlyMemory<byte>> _queue;
    private readonly Channel<ReadOnlyMemory<byte>> _inbound = Channel.CreateBounded<ReadOnlyMemory<byte>>(new BoundedChannelOptions(InboundFrames) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly long _budget;
    private readonly TimeProvider _time;
    private readonly TimeSpan _poll;
    private readonly TimeSpan _idle;
    private readonly ILogger _logger;
    private TaskCompletionSource? _waiter;
    private CancellationTokenSource? _reader;
    private DateTimeOffset _idleSince;
    private bool _last;
    private bool _closeSent;
    private bool _aborted;
    private int _closeCode = (int)WebSocketCloseStatus.NormalClosure;
    private string _closeReason = "";

    public PusherHttpSession(string id, PusherBroker broker)
    {
        Id = id;
        _budget = broker.Node.Options.SendQueueBytes;
        _time = broker.Node.Time;
        _poll = TimeSpan.FromSeconds(broker.Options.HttpPollSeconds);
        _idle = TimeSpan.FromSeconds(broker.Options.HttpSessionTimeoutSeconds);
        _logger = broker.Logger;
        _queue = new SendQueue<ReadOnlyMemory<byte>>(static frame => frame.Length, metrics: broker.Node.Metrics);
        _idleSince = _time.GetUtcNow();
    }

    /// <summary>The session's key in <see cref="PusherHttpSessions"/>: <c>{key}/{server}/{session}</c>.</summary>
    public string Id { get; }

    /// <summary>The connection the session carries (set before the first stream or poll is served).</summary>
    public PusherConnection? Connection { get; set; }

    // ---- the client's frames (xhr_send) ----

    /// <summary>Takes the frames of one <c>xhr_send</c>, in order; false when the session has ended. An empty list is the client's heartbeat.</summary>
    public async ValueTask<bool> PostAsync(List<ReadOnlyMemory<byte>> frames, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _aborted))
        {
            return false;
        }

        Connection?.Touch();
        try
        {
            foreach (var frame in frames)
            {
                await _inbound.Writer.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (ChannelClosedException)
        {
            return false;
        }

        return true;
    }

    /// <inheritdoc />
    public async Task ReceiveAsync(PusherConnection connection)
    {
        var reader = _inbound.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out var frame))
            {
                // As on a WebSocket: once the connection is closing, what the client sends is read and dropped until its
                // close is sent (or the deadline passes), which ends the session.
                if (!connection.IsClosing)
                {
                    await connection.ReceivedAsync(frame).ConfigureAwait(false);
                }
            }
        }
    }

    // ---- the server's frames (IFrameSender) ----

    /// <inheritdoc />
    public bool TrySend(ReadOnlyMemory<byte> frame)
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            if (!_queue.TryWrite(frame, _budget))
            {
                return false;
            }

            waiter = _waiter;
            _waiter = null;
        }

        waiter?.TrySetResult();
        return true;
    }

    /// <inheritdoc />
    public void SendLast(ReadOnlyMemory<byte> frame, bool dropQueued, WebSocketCloseStatus status = WebSocketCloseStatus.NormalClosure, string? reason = "disconnect")
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            if (dropQueued)
            {
                _queue.Clear();
            }

            if (!frame.IsEmpty)
            {
                _queue.TryWrite(frame);
            }

            _queue.Complete();
            _closeCode = (int)status;
            _closeReason = reason ?? "";
            _last = true;
            waiter = _waiter;
            _waiter = null;
        }

        waiter?.TrySetResult();
    }

    /// <inheritdoc />
    public Task DrainAsync() => _drained.Task;

    /// <inheritdoc />
    public void Discard() => _queue.Clear();

    /// <summary>The node's once-a-second sweep: a session with no stream or poll open for the idle timeout ends.</summary>
    public void Sweep()
    {
        _queue.TrimIfUnused();
        bool idle;
        lock (_gate)
        {
            idle = _reader is null && !_aborted && _time.GetUtcNow() - _idleSince >= _idle;
        }

        if (idle)
        {
            LogIdle(_logger, Id, (int)_idle.TotalSeconds);
            Abort();
        }
    }

    /// <inheritdoc />
    public void Abort()
    {
        CancellationTokenSource? reader;
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            _aborted = true;
            reader = _reader;
            waiter = _waiter;
            _waiter = null;
        }

        _inbound.Writer.TryComplete();
        _drained.TrySetResult();
        waiter?.TrySetResult();
        Cancel(reader);
    }

    // ---- streams and polls ----

    /// <summary>
    /// Serves one <c>xhr_streaming</c> response (<paramref name="streaming"/>: held open, each batch flushed as it is
    /// written, a heartbeat after <c>HttpPollSeconds</c> without one) or one <c>xhr</c> poll (answers what waits, or
    /// waits up to <c>HttpPollSeconds</c> and answers a heartbeat). <paramref name="opening"/>: the session's first,
    /// which starts with <c>o</c> (a poll answers only that).
    /// </summary>
    public async Task ServeAsync(PipeWriter body, bool streaming, bool opening, CancellationToken requestAborted)
    {
        using var mine = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);
        CancellationTokenSource? previous = null;
        bool ended;
        lock (_writer)
        {
            lock (_gate)
            {
                ended = _aborted || _closeSent;
                if (!ended)
                {
                    previous = _reader;
                    _reader = mine;
                }
            }
        }

        if (ended)
        {
            // Between its end and its removal: the client is told, and opens a new connection.
            WriteClose(body, 3000, "session ended: connect again");
            try
            {
                await body.FlushAsync(mine.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException)
            {
                // The client went away too.
            }

            return;
        }

        Cancel(previous);
        Connection?.Touch();
        var response = new PusherHttpResponseWriter(body);
        try
        {
            if (opening)
            {
                response.Write("o\n"u8);
                await body.FlushAsync(mine.Token).ConfigureAwait(false);
                if (!streaming)
                {
                    return;
                }
            }

            while (true)
            {
                if (response.Units > ResponseChars)
                {
                    // pusher-js aborts this stream as soon as it has read it. Hold it, writing nothing, until the client's
                    // next stream replaces it; a client that never does gets the end after a poll interval (pusher-js would
                    // take that as a lost connection; it does not come to that).
                    await Task.Delay(_poll, _time, mine.Token).ConfigureAwait(false);
                    return;
                }

                bool wrote, closed;
                lock (_writer)
                {
                    if (!ReferenceEquals(_reader, mine))
                    {
                        return;
                    }

                    (wrote, closed) = WriteWaiting(response);
                }

                if (wrote)
                {
                    await body.FlushAsync(mine.Token).ConfigureAwait(false);
                }

                if (closed)
                {
                    _drained.TrySetResult();
                    _inbound.Writer.TryComplete();
                    return;
                }

                if (wrote && !streaming)
                {
                    return;
                }

                try
                {
                    await WaitAsync().WaitAsync(_poll, _time, mine.Token).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    response.Write("h\n"u8);
                    await body.FlushAsync(mine.Token).ConfigureAwait(false);
                    if (!streaming)
                    {
                        return;
                    }
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // The client went away, or a newer stream or poll took over.
        }
        finally
        {
            lock (_gate)
            {
                if (ReferenceEquals(_reader, mine))
                {
                    _reader = null;
                    _idleSince = _time.GetUtcNow();
                }
            }
        }
    }

    private static void Cancel(CancellationTokenSource? reader)
    {
        try
        {
            reader?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Its request ended meanwhile.
        }
    }

    /// <summary>Writes a <c>c[code,"reason"]</c> line: the connection is closed with that code.</summary>
    public static void WriteClose(IBufferWriter<byte> body, int code, string reason)
    {
        body.Write("c"u8);
        using (var json = new Utf8JsonWriter(body, LineOptions))
        {
            json.WriteStartArray();
            json.WriteNumberValue(code);
            json.WriteStringValue(reason);
            json.WriteEndArray();
        }

        body.Write("\n"u8);
    }

    /// <summary>Completes when there is something to write: a frame, the close, or the session ended.</summary>
    private Task WaitAsync()
    {
        lock (_gate)
        {
            if (_queue.Count > 0 || (_last && !_closeSent) || _aborted)
            {
                return Task.CompletedTask;
            }

            return (_waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
    }

    /// <summary>
    /// Writes what waits as one <c>a[…]</c> line (the frames as JSON strings), then <c>c[…]</c> once the last frame is
    /// out and the response is within <see cref="ResponseChars"/> (past it, the next stream or poll says it: pusher-js
    /// reads no further line of this one).
    /// </summary>
    private (bool Wrote, bool Closed) WriteWaiting(PusherHttpResponseWriter body)
    {
        var wrote = false;
        Utf8JsonWriter? json = null;
        try
        {
            while (_queue.TryRead(out var frame))
            {
                if (json is null)
                {
                    body.Write("a"u8);
                    json = new Utf8JsonWriter(body, LineOptions);
                    json.WriteStartArray();
                }

                json.WriteStringValue(frame.Span);
                if (json.BytesPending + json.BytesCommitted >= LineBytes)
                {
                    break;
                }
            }

            if (json is not null)
            {
                json.WriteEndArray();
                json.Flush();
                body.Write("\n"u8);
                wrote = true;
            }
        }
        finally
        {
            json?.Dispose();
        }

        int code;
        string reason;
        lock (_gate)
        {
            if (!_last || _closeSent || _queue.Count > 0 || body.Units > ResponseChars)
            {
                return (wrote, false);
            }

            _closeSent = true;
            (code, reason) = (_closeCode, _closeReason);
        }

        WriteClose(body, code, reason);
        return (true, true);
    }

    [LoggerMessage(EventId = 1530, Level = LogLevel.Information, Message = "Pusher HTTP session {Session} closed: no stream or poll for {Seconds} s (Relay:Pusher:HttpSessionTimeoutSeconds)")]
    private static partial void LogIdle(ILogger logger, string session, int seconds);
}
