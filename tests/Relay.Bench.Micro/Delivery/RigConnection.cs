using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Relay.Auth.Verification;
using Relay.Ingress;
using Relay.Ingress.Realtime;
using Relay.Ingress.Connections;
using Relay.Ingress.Sending;
using Relay.Ingress.WebSockets;

namespace Relay.Bench.Micro.Delivery;

/// <summary>
/// A real <see cref="RealtimeConnection"/> as Relay's own transport serves it: a real <see cref="PipeWebSocket"/> and
/// <see cref="SocketFrameSender"/> on one end of a Unix-domain socket pair (two file descriptors per connection). The
/// rig writes its input pipe (what a client sends) and a drain loop reads the other end of the socket and counts whole
/// WebSocket frames.
/// </summary>
internal sealed class RigConnection
{
    private readonly Pipe _input;
    private readonly Socket _server;
    private readonly Socket _client;
    private readonly FrameCounter _counter = new();

    /// <param name="node">The node the connection belongs to.</param>
    /// <param name="principal">Who the connection is.</param>
    /// <param name="pool">Memory for the input pipe.</param>
    /// <param name="listener">A listening Unix-domain socket: the connection sends to the socket it accepts.</param>
    public RigConnection(IngressNode node, RelayPrincipal principal, MemoryPool<byte> pool, Socket listener)
    {
        // Kestrel's block pool (the default, ArrayPool<byte>.Shared, keeps only a few dozen free buffers per core).
        _input = new Pipe(new PipeOptions(pool: pool, useSynchronizationContext: false));
        _client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _client.Connect(listener.LocalEndPoint!);
        _server = listener.Accept();

        // As Relay's transport leaves its sockets (SocketReader): non-blocking, so a send that fits is one system call.
        _server.Blocking = false;
        var socket = new PipeWebSocket(_input.Reader, new BareSocket(_server), "relay.v1.json", new AbortAction(CloseInput), TimeProvider.System);
        Sender = new SocketFrameSender(socket, node.Options.SendQueueBytes, node.NextFlusher(), TimeSpan.FromMilliseconds(node.Options.HeartbeatMs), node.Metrics);
        Realtime = new RealtimeConnection(socket, Sender, principal, node, new RigAuthenticator(), NullLogger.Instance);
    }

    public RealtimeConnection Realtime { get; }

    public SocketFrameSender Sender { get; }

    /// <summary>The sender's backlog (the rig takes frames off it as the write loop would).</summary>
    public SendQueue<ReadOnlyMemory<byte>> Queue => Sender.Backlog;

    /// <summary>What the client sends: masked WebSocket frames written here reach the connection's receive loop.</summary>
    public PipeWriter Input => _input.Writer;

    public void CloseInput() => _input.Writer.Complete();

    public void CloseOutput()
    {
        _server.Dispose();
        _client.Dispose();
    }

    /// <summary>Reads what the connection sends and reports each piece's whole WebSocket frames to <paramref name="onFrames"/>.</summary>
    /// <param name="onFrames">Called with the number of frames completed by each piece read.</param>
    /// <param name="captured">Where to keep a copy of every frame's payload, when it returns a queue (for checks; it allocates).</param>
    public async Task DrainAsync(Action<int> onFrames, Func<ConcurrentQueue<byte[]>?> captured)
    {
        var buffer = new byte[64 * 1024];
        while (true)
        {
            int count;
            try
            {
                count = await _client.ReceiveAsync(buffer.AsMemory(), SocketFlags.None).ConfigureAwait(false);
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
