using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification;
using Relay.Core.Protocol;
using Relay.Ingress.Connections;
using Relay.Ingress.Limits;
using Relay.Ingress.Pusher;
using Relay.Ingress.Sending;
using Relay.Ingress.WebSockets;
using Relay.ServiceDefaults.Tls;

namespace Relay.Ingress.Realtime;

/// <summary>
/// Kestrel's transport for TCP endpoints, with one difference: a connection whose first bytes are a complete,
/// authorised <c>GET /v1/realtime</c> upgrade is served by Relay on the bare socket (<see cref="SocketReader"/> in,
/// <see cref="DirectSender"/> out) and never becomes a Kestrel connection, so it holds no pipes, no transport
/// connection object and no receive arguments of Kestrel's: the largest part of an idle connection's memory.
/// Every other connection (HTTP, SSE, TLS, HTTP/2, an upgrade that arrives in pieces or with refused credentials)
/// is handed to Kestrel exactly as Kestrel's own socket transport would have accepted it, bytes untouched (the
/// first bytes are only peeked). Registered after Kestrel's factory, so Kestrel picks it for IP endpoints
/// (<see cref="IConnectionListenerFactorySelector"/>); Unix sockets and inherited handles stay with Kestrel's.
/// </summary>
internal sealed partial class RealtimeListenerFactory(
    IOptions<SocketTransportOptions> transportOptions,
    IOptions<IngressOptions> ingressOptions,
    TlsListeners tls,
    IServiceProvider services,
    ILoggerFactory loggers) : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    /// <summary>How often the wait for a new connection's first bytes is cut: it waits one to two of these.</summary>
    internal static readonly TimeSpan FirstBytesWait = TimeSpan.FromSeconds(2);

    private readonly IServiceProvider _services = services;
    private readonly ILoggerFactory _loggers = loggers;
    private long _taken;
    private long _handed;

    /// <summary>Realtime connections served on their bare socket since start.</summary>
    internal long Taken => Interlocked.Read(ref _taken);

    /// <summary>Connections handed to Kestrel since start.</summary>
    internal long Handed => Interlocked.Read(ref _handed);

    /// <summary>
    /// IP endpoints with <see cref="IngressOptions.OwnTransport"/> on, except those that serve TLS: there the first bytes
    /// are a TLS handshake for Kestrel, and a plain upgrade must not be served (GatedListenerFactory binds them); nor the
    /// gRPC endpoint, which speaks HTTP/2 only.
    /// </summary>
    public bool CanBind(EndPoint endpoint) =>
        endpoint is IPEndPoint && ingressOptions.Value is { OwnTransport: true } && !tls.ServesTls(endpoint)
        && _services.GetService<Grpc.GrpcEndpoint>()?.Owns(endpoint) != true;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var options = transportOptions.Value;
        var socket = ListenSocket.Bind(options, endpoint);

        var contexts = new SocketConnectionContextFactory(
            new SocketConnectionFactoryOptions
            {
                IOQueueCount = options.IOQueueCount,
                WaitForDataBeforeAllocatingBuffer = options.WaitForDataBeforeAllocatingBuffer,
                MaxReadBufferSize = options.MaxReadBufferSize,
                MaxWriteBufferSize = options.MaxWriteBufferSize,
                UnsafePreferInlineScheduling = options.UnsafePreferInlineScheduling,
            },
            _loggers.CreateLogger("Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets"));
        return new ValueTask<IConnectionListener>(new Listener(this, socket, contexts, options.NoDelay));
    }

    [LoggerMessage(EventId = 1300, Level = LogLevel.Debug, Message = "Realtime connection from {Remote} ended with an error")]
    private static partial void LogConnectionFailed(ILogger logger, EndPoint? remote, Exception exception);

    [LoggerMessage(EventId = 1302, Level = LogLevel.Warning, Message = "Reading the first request from {Remote} failed; Kestrel answers it")]
    private static partial void LogClassifyFailed(ILogger logger, EndPoint? remote, Exception exception);

    [LoggerMessage(EventId = 1301, Level = LogLevel.Warning, Message = "Accepting connections on {EndPoint} failed; no new connections are taken there")]
    private static partial void LogAcceptFailed(ILogger logger, EndPoint? endPoint, Exception exception);

    private sealed class Listener : IConnectionListener
    {
        private readonly RealtimeListenerFactory _factory;
        private readonly Socket _socket;
        private readonly SocketConnectionContextFactory _contexts;
        private readonly bool _noDelay;
        private readonly Channel<ConnectionContext> _handed = Channel.CreateUnbounded<ConnectionContext>(new UnboundedChannelOptions { SingleReader = true });
        private readonly CancellationTokenSource _stopping = new();
        private readonly ILogger _logger;
        private readonly IRelayAuthenticator _authenticator;
        private readonly IngressNode _node;
        private readonly PusherBroker? _pusher;
        private readonly ILogger<RealtimeConnection> _connectionLogger;
        private readonly ConnectionGate _gate;
        private readonly ReadinessPoller? _poller;
        private readonly DescriptorAcceptor? _acceptor;
        private volatile CancellationTokenSource _firstBytes = new();
        private readonly Task _accepting;
        private readonly Task _cutting;

        public Listener(RealtimeListenerFactory factory, Socket socket, SocketConnectionContextFactory contexts, bool noDelay)
        {
            _factory = factory;
            _socket = socket;
            _contexts = contexts;
            _noDelay = noDelay;
            _logger = factory._loggers.CreateLogger<RealtimeListenerFactory>();
            _authenticator = factory._services.GetRequiredService<IRelayAuthenticator>();
            _node = factory._services.GetRequiredService<IngressNode>();

            // Pusher upgrades (/app/{key}) on this transport too, when the node serves Pusher.
            _pusher = factory._services.GetService<PusherBroker>() is { Options.Enabled: true } pusher ? pusher : null;

            // The container's ILogger<T> is one shared instance (CreateLogger<T> would make a wrapper per connection).
            _connectionLogger = factory._services.GetRequiredService<ILogger<RealtimeConnection>>();
            _gate = factory._services.GetRequiredService<ConnectionGate>();
            EndPoint = socket.LocalEndPoint!;

            // With Relay's poller (Linux), connections are taken as bare descriptors, wait for their first bytes and
            // then for input in the poller, and make the runtime's Socket only when handed to Kestrel or refused.
            _poller = _node.Options.ReadinessPoller && SocketCalls.IsSupported ? ReadinessPoller.Shared : null;
            _acceptor = _poller is { } poller ? new DescriptorAcceptor(socket, poller, noDelay, _logger) : null;

            // On the thread pool, not on the context of whoever started the host (an embedder's UI or test thread).
            _accepting = Task.Run(AcceptLoopAsync, CancellationToken.None);
            _cutting = Task.Run(CutFirstByteWaitsAsync, CancellationToken.None);
        }

        public EndPoint EndPoint { get; }

        /// <summary>The next connection for Kestrel; null once unbound (the accept loop completes the channel).</summary>
        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            while (await _handed.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                if (_handed.Reader.TryRead(out var connection))
                {
                    return connection;
                }
            }

            return null;
        }

        public async ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            _acceptor?.Stop();
            _socket.Dispose();
            await _accepting.ConfigureAwait(false);
        }

        public async ValueTask DisposeAsync()
        {
            _acceptor?.Stop();
            _socket.Dispose();
            await _stopping.CancelAsync().ConfigureAwait(false);
            await _firstBytes.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(_accepting, _cutting).ConfigureAwait(false);
            _handed.Writer.TryComplete();
            while (_handed.Reader.TryRead(out var connection))
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }

            _contexts.Dispose();
        }

        private async Task AcceptLoopAsync()
        {
            try
            {
                while (true)
                {
                    var (accepted, remote) = await ListenSocket.AcceptBareAsync(_socket, _acceptor, _noDelay, _logger).ConfigureAwait(false);

                    // Past the cap: answered 503 and closed, so descriptors never run out (ConnectionGate); past its
                    // address's limit, 429 the same way.
                    var address = _gate.Addresses.AddressOf(remote);
                    var admission = _gate.TryEnter(address);
                    if (admission != Admission.Admitted)
                    {
                        // With every refusal slot busy, accepting waits: the backlog holds the flood, not our descriptors.
                        try
                        {
                            await _gate.RefusalSlots.WaitAsync(_stopping.Token).ConfigureAwait(false);
                        }
                        catch (OperationCanceledException)
                        {
                            accepted.Dispose();
                            throw new ObjectDisposedException(nameof(Listener));
                        }

                        _ = RefuseAsync(accepted, _gate.RefusalFor(admission));
                        continue;
                    }

                    _ = ClassifyAsync(accepted, address);
                }
            }
            catch (Exception ex) when (ListenSocket.IsUnbound(ex))
            {
                // Unbound.
            }
            catch (Exception ex)
            {
                LogAcceptFailed(_logger, EndPoint, ex);
            }
            finally
            {
                _handed.Writer.TryComplete();
            }
        }

        /// <summary>Cancels, every <see cref="FirstBytesWait"/>, the waits for first bytes begun before the last cut.</summary>
        private async Task CutFirstByteWaitsAsync()
        {
            using var timer = new PeriodicTimer(FirstBytesWait);
            try
            {
                while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
                {
                    var cut = _firstBytes;
                    _firstBytes = new CancellationTokenSource();
                    await cut.CancelAsync().ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException)
            {
                // Disposed.
            }
        }

        /// <summary>A socket past a limit, on a refusal slot already taken: a probe goes to Kestrel, anything else gets <paramref name="refusal"/>.</summary>
        private async Task RefuseAsync(BareSocket socket, byte[] refusal)
        {
            var handed = false;
            try
            {
                if (await SocketRefusal.IsProbeAsync(socket.Socket).ConfigureAwait(false))
                {
                    handed = Hand(socket, address: null, onRefusalSlot: true);
                    return;
                }

                await SocketRefusal.AnswerAsync(socket.Socket, refusal).ConfigureAwait(false);
            }
            finally
            {
                if (!handed)
                {
                    socket.Dispose();
                    _gate.RefusalSlots.Release();
                }
            }
        }

        /// <summary>Serves a realtime upgrade on the bare socket, or hands the connection to Kestrel (which then counts it out).</summary>
        private async Task ClassifyAsync(BareSocket socket, IPAddress? address)
        {
            var handed = false;
            try
            {
                RealtimeHandshake.Accepted? accepted;
                RefusedOpen? refused = null;
                try
                {
                    (accepted, refused) = await TryTakeAsync(socket).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    socket.Dispose();
                    return;
                }
                catch (Exception ex)
                {
                    // Nothing was consumed before the head was accepted: Kestrel can still answer whatever this is.
                    LogClassifyFailed(_logger, socket.Remote, ex);
                    accepted = null;
                }

                if (accepted is null)
                {
                    handed = Hand(socket, address, onRefusalSlot: false, refused);
                    return;
                }

                Interlocked.Increment(ref _factory._taken);

                // Input waits in Relay's poller when the head did (InputWait); without a poller the head was read with the
                // runtime's wait, which registered the socket with the runtime's epoll for good, and reads wait there too.
                var transport = new BareSocketTransport(socket, _poller);
                PipeWebSocket? webSocket = null;
                try
                {
                    // Relay's WebSocket on the bare socket: frames read through SocketReader, sent by a SocketFrameSender.
                    webSocket = new PipeWebSocket(transport.Input, transport.Socket, accepted.Value.SubProtocol, transport, _node.Time);
                    await ServeAsync(webSocket, accepted.Value).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    LogConnectionFailed(_logger, socket.Remote, ex);
                }
                finally
                {
                    Release(accepted.Value);
                    if (webSocket is not null)
                    {
                        // What was written (a close frame last) reaches the kernel, and the client reads it up to the end,
                        // before the socket closes (BareSocketTransport.FinishAsync says why).
                        var started = _node.Time.GetTimestamp();
                        await webSocket.FinishAsync(_node.Options.CloseTimeout).ConfigureAwait(false);
                        webSocket.Dispose();
                        await transport.EndStreamAsync(_node.Options.CloseTimeout - _node.Time.GetElapsedTime(started), TimeProvider.System).ConfigureAwait(false);
                    }

                    transport.Close();
                }
            }
            finally
            {
                if (!handed)
                {
                    _gate.Exit(address);
                }
            }
        }

        /// <summary>
        /// Answers the upgrade and serves the connection until it ends. Not async: the accept loop's own frame is the only
        /// one that waits for the connection's end (each async frame is held for the connection's whole life).
        /// </summary>
        private Task ServeAsync(PipeWebSocket webSocket, RealtimeHandshake.Accepted accepted)
        {
            webSocket.SendRaw(accepted.Response);
            var options = _node.Options;
            var sender = new SocketFrameSender(webSocket, options.SendQueueBytes, _node.NextFlusher(), TimeSpan.FromMilliseconds(options.HeartbeatMs), _node.Metrics);
            return accepted.Pusher
                ? new PusherConnection(new PusherWebSocketTransport(webSocket), sender, _pusher!, accepted.Principal).RunAsync()
                : new RealtimeConnection(webSocket, sender, accepted.Principal, _node, _authenticator, _connectionLogger).RunAsync();
        }

        /// <summary>Gives back what admitting the upgrade counted: the app's connection, and a Pusher one's quota.</summary>
        private void Release(RealtimeHandshake.Accepted accepted)
        {
            if (accepted.Pusher)
            {
                _pusher!.Release(accepted.Principal.AppId);
            }
            else
            {
                _node.AppLimits.Closed(accepted.Principal.AppId);
            }
        }

        /// <summary>
        /// Waits (a little) for the client's first bytes and peeks at them: a complete, authorised realtime upgrade is
        /// consumed and returned; anything else leaves every byte in place (null), with the app limit's refusal when that
        /// is why (Kestrel's endpoint answers it without asking the limit again).
        /// </summary>
        private async Task<(RealtimeHandshake.Accepted? Accepted, RefusedOpen? Refused)> TryTakeAsync(BareSocket socket)
        {
            // A client that says nothing for a while is Kestrel's to time out.
            if (_poller is not null)
            {
                if (!await InputWait.ForAsync(_poller, socket.Handle, _firstBytes.Token).ConfigureAwait(false))
                {
                    return default;
                }
            }
            else
            {
                try
                {
                    await socket.Socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, _firstBytes.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return default;
                }
            }

            var buffer = ArrayPool<byte>.Shared.Rent(RealtimeHandshake.MaxHeadBytes);
            try
            {
                var count = Peek(socket, buffer.AsSpan(0, RealtimeHandshake.MaxHeadBytes), out var error);
                if (error != SocketError.Success)
                {
                    return default;
                }

                var peeked = buffer.AsSpan(0, count);
                var length = RealtimeHandshake.StartsLikeOurs(peeked) ? RealtimeHandshake.HeadLength(peeked) : -1;
                if (length < 0 || RealtimeHandshake.TryAccept(Encoding.Latin1.GetString(peeked[..(length - 4)]), _authenticator, _pusher) is not { } accepted)
                {
                    return default;
                }

                // An app at its connection limit: Kestrel gets the bytes untouched, and RealtimeEndpoint answers 429 (Pusher's
                // endpoint pusher:error 4004) with this refusal, carried in the connection's items (RefusedOpen).
                var app = accepted.Principal.AppId;
                var overLimit = accepted.Pusher
                    ? await _pusher!.TryCountAsync(app, _node.Stopping).ConfigureAwait(false) is { } overQuota ? new RelayError(ErrorCodes.RateLimited, overQuota) : null
                    : await _node.AppLimits.TryOpenAsync(app, _node.Stopping).ConfigureAwait(false);
                if (overLimit is not null)
                {
                    return (null, new RefusedOpen(app, overLimit));
                }

                // The head is in the kernel's buffer (just peeked): take exactly it, and leave any frames behind it.
                try
                {
                    var taken = SocketCalls.IsSupported
                        ? SocketCalls.Receive(socket.Handle, buffer.AsSpan(0, length), out _)
                        : socket.Socket.Receive(buffer, 0, length, SocketFlags.None);
                    if (taken != length)
                    {
                        throw new SocketException((int)SocketError.ProtocolNotSupported);
                    }
                }
                catch
                {
                    Release(accepted);
                    throw;
                }

                return (accepted, null);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        /// <summary>
        /// Looks at what the client sent without taking it and without waiting: with <see cref="SocketCalls"/> where they
        /// are (no runtime state made), else with the runtime's socket switched to non-blocking for the call.
        /// </summary>
        private static int Peek(BareSocket socket, Span<byte> buffer, out SocketError error)
        {
            if (SocketCalls.IsSupported)
            {
                return SocketCalls.Peek(socket.Handle, buffer, out error);
            }

            var runtime = socket.Socket;
            runtime.Blocking = false;
            var count = runtime.Receive(buffer, SocketFlags.Peek, out error);
            runtime.Blocking = true;
            return count;
        }

        /// <summary>
        /// Hands the socket to Kestrel, with the app limit's refusal of its first request when there was one; true once the
        /// handed connection owns the count (it exits when Kestrel disposes it).
        /// </summary>
        private bool Hand(BareSocket socket, IPAddress? address, bool onRefusalSlot, RefusedOpen? refused = null)
        {
            ConnectionContext connection;
            try
            {
                // Kestrel's transport needs the runtime's socket: made here for a connection taken as a bare descriptor.
                connection = new GatedConnection(_contexts.Create(socket.Socket), _gate, address, onRefusalSlot);
                refused?.CarryOn(connection);
            }
            catch (ObjectDisposedException)
            {
                // The listener is being disposed: nobody accepts any more.
                socket.Dispose();
                return false;
            }

            Interlocked.Increment(ref _factory._handed);
            if (!_handed.Writer.TryWrite(connection))
            {
                _ = connection.DisposeAsync().AsTask();
            }

            return true;
        }
    }
}
