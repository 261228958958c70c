using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Reflection;
using Microsoft.Extensions.Logging.Abstractions;
using Relay.Auth;
using Relay.Ingress;
using Relay.Ingress.Realtime;
using Relay.Ingress.WebSockets;

namespace Relay.Bench.Micro.Delivery;

/// <summary>
/// A real <see cref="RealtimeConnection"/> over a real <see cref="PipeWebSocket"/>: the rig writes its input pipe (what
/// a client sends) and a drain loop reads what it sends, from its output pipe or from the far end of its socket, and
/// counts whole WebSocket frames.
/// </summary>
internal sealed class RigConnection
{
    // The connection keeps its queue private; the rig reads it the way the write loop does. Looked up once.
    private static readonly FieldInfo QueueField = typeof(RealtimeConnection).GetField("_queue", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? throw new InvalidOperationException("RealtimeConnection._queue is gone: update the rigs to the connection's new send queue");

    private readonly Pipe _input;
    private readonly Pipe _output;
    private readonly Socket? _server;
    private readonly Socket? _client;
    private readonly FrameCounter _counter = new();

    /// <param name="node">The node the connection belongs to.</param>
    /// <param name="principal">Who the connection is.</param>
    /// <param name="pool">Memory for the pipes.</param>
    /// <param name="listener">A listening Unix-domain socket to send to (<see cref="RigTransport.Socket"/>), or null for the output pipe.</param>
    public RigConnection(IngressNode node, RelayPrincipal principal, MemoryPool<byte> pool, Socket? listener)
    {
        // Kestrel's block pool, as a socket transport's pipes have (the default pool, ArrayPool<byte>.Shared,
        // keeps only a few dozen free buffers per core: fewer than a burst to many connections holds at once).
        // Inline schedulers on the output: a flush runs the drain loop right there, on the flushing thread.
        _input = new Pipe(new PipeOptions(pool: pool, useSynchronizationContext: false));
        _output = new Pipe(new PipeOptions(pool: pool, readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false));
        if (listener is not null)
        {
            _client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _client.Connect(listener.LocalEndPoint!);
            _server = listener.Accept();
        }

        var socket = new PipeWebSocket(new DuplexPipe(_input.Reader, _output.Writer), "relay.v1.json", CloseInput, TimeProvider.System, _server);
        Realtime = new RealtimeConnection(socket, principal, node, new RigAuthenticator(), NullLogger.Instance);
        Queue = (SendQueue<ReadOnlyMemory<byte>>)QueueField.GetValue(Realtime)!;
    }

    public RealtimeConnection Realtime { get; }

    public SendQueue<ReadOnlyMemory<byte>> Queue { get; }

    /// <summary>What the client sends: masked WebSocket frames written here reach the connection's receive loop.</summary>
    public PipeWriter Input => _input.Writer;

    public void CloseInput() => _input.Writer.Complete();

    public void CloseOutput()
    {
        _output.Writer.Complete();
        _server?.Dispose();
        _client?.Dispose();
    }

    /// <summary>Reads what the connection sends and reports each piece's whole WebSocket frames to <paramref name="onFrames"/>.</summary>
    /// <param name="onFrames">Called with the number of frames completed by each piece read.</param>
    /// <param name="captured">Where to keep a copy of every frame's payload, when it returns a queue (for checks; it allocates).</param>
    public Task DrainAsync(Action<int> onFrames, Func<ConcurrentQueue<byte[]>?> captured) =>
        _client is null ? DrainPipeAsync(onFrames, captured) : DrainSocketAsync(onFrames, captured, _client);

    private async Task DrainPipeAsync(Action<int> onFrames, Func<ConcurrentQueue<byte[]>?> captured)
    {
        var reader = _output.Reader;
        while (true)
        {
            var read = await reader.ReadAsync().ConfigureAwait(false);
            var frames = 0;
            foreach (var segment in read.Buffer)
            {
                frames += _counter.Feed(segment.Span, captured());
            }

            reader.AdvanceTo(read.Buffer.End);
            if (frames > 0)
            {
                onFrames(frames);
            }

            if (read.IsCompleted || read.IsCanceled)
            {
                await reader.CompleteAsync().ConfigureAwait(false);
                return;
            }
        }
    }

    private async Task DrainSocketAsync(Action<int> onFrames, Func<ConcurrentQueue<byte[]>?> captured, Socket client)
    {
        var buffer = new byte[64 * 1024];
        while (true)
        {
            int count;
            try
            {
                count = await client.ReceiveAsync(buffer.AsMemory(), SocketFlags.None).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }

            if (count == 0)
            {
                return;
            }

            var frames = _counter.Feed(buffer.AsSpan(0, count), captured());
            if (frames > 0)
            {
                onFrames(frames);
            }
        }
    }
}
