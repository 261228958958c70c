using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;

namespace Relay.Testing;

/// <summary>
/// A raw protocol client over a real <see cref="ClientWebSocket"/>: sends JSON text frames and reads server
/// objects one at a time, splitting array frames. Every read has a timeout.
/// </summary>
public sealed class TestSocket : IAsyncDisposable
{
    /// <summary>How long a read waits before failing the test.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly Queue<JsonElement> _pending = new();
    private readonly byte[] _buffer = new byte[1 << 20];
    private int _nextRef;

    private readonly Channel<JsonElement> _inbox = Channel.CreateUnbounded<JsonElement>();
    private readonly List<JsonElement> _skipped = [];

    private TestSocket(ClientWebSocket socket)
    {
        Socket = socket;
        _ = ReadLoopAsync();
    }

    /// <summary>The socket.</summary>
    public ClientWebSocket Socket { get; }

    /// <summary>The <c>connected</c> frame.</summary>
    public JsonElement Connected { get; private set; }

    /// <summary>Frames whose JSON was an array (the server batched them).</summary>
    public int BatchedFrames { get; private set; }

    /// <summary>Connects and reads the <c>connected</c> frame.</summary>
    public static async Task<TestSocket> ConnectAsync(Uri uri, string? subProtocol = null, Action<ClientWebSocketOptions>? options = null)
    {
        var socket = new ClientWebSocket();
        if (subProtocol is not null)
        {
            socket.Options.AddSubProtocol(subProtocol);
        }

        options?.Invoke(socket.Options);
        await socket.ConnectAsync(uri, CancellationToken.None).WaitAsync(DefaultTimeout).ConfigureAwait(false);
        var client = new TestSocket(socket);
        client.Connected = await client.ReceiveAsync().ConfigureAwait(false);
        if (client.Connected.GetProperty("type").GetString() != "connected")
        {
            throw new InvalidOperationException("first frame was not 'connected': " + client.Connected.GetRawText());
        }

        return client;
    }

    /// <summary>Tries an upgrade that the server should refuse, and returns the HTTP status it answered with.</summary>
    public static async Task<HttpStatusCode> RefusedUpgradeAsync(Uri uri, Action<ClientWebSocketOptions>? options = null)
    {
        using var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        options?.Invoke(socket.Options);
        try
        {
            await socket.ConnectAsync(uri, CancellationToken.None).WaitAsync(DefaultTimeout).ConfigureAwait(false);
        }
        catch (WebSocketException)
        {
            return socket.HttpStatusCode;
        }

        throw new InvalidOperationException("the upgrade was accepted but should have been refused");
    }

    /// <summary>A fresh <c>ref</c> number.</summary>
    public int NextRef() => Interlocked.Increment(ref _nextRef);

    /// <summary>Sends raw text as one frame.</summary>
    public Task SendTextAsync(string text) =>
        Socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, CancellationToken.None).WaitAsync(DefaultTimeout);

    /// <summary>Sends raw bytes as one frame of the given type.</summary>
    public Task SendBytesAsync(byte[] bytes, WebSocketMessageType type = WebSocketMessageType.Text) =>
        Socket.SendAsync(bytes, type, true, CancellationToken.None).WaitAsync(DefaultTimeout);

    /// <summary>Sends an object serialized as JSON.</summary>
    public Task SendAsync(object request) => SendTextAsync(JsonSerializer.Serialize(request));

    /// <summary>Sends a request with a fresh <c>ref</c> and returns the reply with that ref (other frames before it are kept).</summary>
    public async Task<JsonElement> RequestAsync(Dictionary<string, object?> request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var reference = NextRef();
        request["ref"] = reference;
        await SendAsync(request).ConfigureAwait(false);
        return await ReceiveMatchingAsync(e => e.TryGetProperty("ref", out var r) && r.ValueKind == JsonValueKind.Number && r.GetInt32() == reference).ConfigureAwait(false);
    }

    /// <summary>Reads until a frame matches; frames read past are kept for later reads, in order.</summary>
    public async Task<JsonElement> ReceiveMatchingAsync(Func<JsonElement, bool> match, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        for (var i = 0; i < _skipped.Count; i++)
        {
            if (match(_skipped[i]))
            {
                var found = _skipped[i];
                _skipped.RemoveAt(i);
                return found;
            }
        }

        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException("no matching frame arrived in time");
            }

            var next = await ReceiveRawAsync(left).ConfigureAwait(false);
            if (match(next))
            {
                return next;
            }

            _skipped.Add(next);
        }
    }

    /// <summary>Reads the next server object (kept frames first).</summary>
    public async Task<JsonElement> ReceiveAsync(TimeSpan? timeout = null)
    {
        if (_skipped.Count > 0)
        {
            var first = _skipped[0];
            _skipped.RemoveAt(0);
            return first;
        }

        return await ReceiveRawAsync(timeout ?? DefaultTimeout).ConfigureAwait(false);
    }

    /// <summary>Reads the next <c>message</c> push.</summary>
    public Task<JsonElement> ReceiveMessageAsync(TimeSpan? timeout = null) =>
        ReceiveMatchingAsync(static e => e.GetProperty("type").GetString() == "message", timeout);

    private async Task<JsonElement> ReceiveRawAsync(TimeSpan timeout)
    {
        if (_pending.Count > 0)
        {
            return _pending.Dequeue();
        }

        // Only the wait on the inbox is cancelled: cancelling a WebSocket receive would abort the socket.
        using var cts = new CancellationTokenSource(timeout);
        JsonElement root;
        try
        {
            root = await _inbox.Reader.ReadAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            throw new TimeoutException($"no frame arrived within {timeout.TotalMilliseconds:0} ms");
        }
        catch (ChannelClosedException ex)
        {
            throw ex.InnerException as WebSocketException ?? new WebSocketException("the socket closed", ex);
        }

        if (root.ValueKind == JsonValueKind.Array)
        {
            BatchedFrames++;
            foreach (var element in root.EnumerateArray())
            {
                _pending.Enqueue(element.Clone());
            }

            return _pending.Dequeue();
        }

        return root;
    }

    private async Task ReadLoopAsync()
    {
        var count = 0;
        try
        {
            while (true)
            {
                if (count == _buffer.Length)
                {
                    throw new InvalidOperationException("a server frame was larger than the test client's 1 MiB buffer");
                }

                var result = await Socket.ReceiveAsync(_buffer.AsMemory(count), CancellationToken.None).ConfigureAwait(false);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    _inbox.Writer.TryComplete(new WebSocketException($"closed by server: {Socket.CloseStatus} {Socket.CloseStatusDescription}"));
                    return;
                }

                count += result.Count;
                if (result.EndOfMessage)
                {
                    _inbox.Writer.TryWrite(JsonDocument.Parse(_buffer.AsMemory(0, count)).RootElement.Clone());
                    count = 0;
                }
            }
        }
        catch (Exception ex)
        {
            _inbox.Writer.TryComplete(ex as WebSocketException ?? new WebSocketException("receive failed: " + ex.Message, ex));
        }
    }

    /// <summary>Waits for the server to close the socket (after a disconnect), reading and dropping frames.</summary>
    public async Task<List<JsonElement>> DrainUntilClosedAsync(TimeSpan? timeout = null)
    {
        var frames = new List<JsonElement>(_skipped);
        _skipped.Clear();
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        try
        {
            while (DateTime.UtcNow < deadline)
            {
                frames.Add(await ReceiveRawAsync(deadline - DateTime.UtcNow).ConfigureAwait(false));
            }
        }
        catch (WebSocketException)
        {
            return frames;
        }
        catch (TimeoutException)
        {
            // Fall through to the failure below.
        }

        throw new TimeoutException("the server did not close the socket in time");
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (Socket.State == WebSocketState.Open)
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await Socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
            // The server may already be gone.
        }

        Socket.Dispose();
    }
}
