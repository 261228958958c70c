using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Ingress.Connections;
using Relay.Ingress.Sending;
using Relay.Ingress.WebSockets;
using Relay.ServiceDefaults.Tls;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// MQTT over TCP on <c>Relay:Mqtt:Port</c>, behind the node's connection cap. With <c>Relay:Mqtt:OwnTransport</c> (on by
/// default) and <c>Relay:Ingress:OwnTransport</c> each connection is served on its bare socket (<see cref="BareSocketTransport"/>: a zero-byte read while idle,
/// send buffers given back when quiet), as realtime upgrades are: no pipes, no Kestrel connection, the most of an idle
/// connection's memory (docs/benchmarks.md, MQTT); otherwise on Kestrel's socket transport (the gated listener every
/// non-realtime endpoint uses). It binds beside Kestrel rather than as a Kestrel endpoint: an endpoint
/// configured in code makes Kestrel ignore the URLs the hosts are started with (<c>--urls</c>, <c>ASPNETCORE_URLS</c>).
/// A port in use fails start-up with a message saying which setting to change. With a certificate (<c>Relay:Tls</c>) a
/// second listener on <c>Relay:Mqtt:TlsPort</c> (8883) serves MQTT over TLS: its handshake runs here, with the host's
/// certificate as it is reloaded, and the decrypted stream goes to the same connection handler.
/// </summary>
public sealed partial class MqttListener : IHostedService, IAsyncDisposable, IBareConnectionOwner
{
    /// <summary>The TLS handshake a connection refused for its address may take before its CONNACK: it holds a refusal slot meanwhile.</summary>
    private static readonly TimeSpan RefusedHandshakeTimeout = TimeSpan.FromSeconds(2);

    private readonly MqttOptions _options;
    private readonly GatedListenerFactory _factory;
    private readonly SocketTransportOptions _transport;
    private readonly ConnectionGate _gate;
    private readonly IngressOptions _ingress;
    private readonly ReadinessPoller? _poller;
    private readonly MqttConnectionHandler _handler;
    private readonly ServerCertificate? _certificate;
    private readonly MqttClientCertificates? _clientCertificates;
    private readonly ILogger<MqttListener> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private IConnectionListener? _listener;
    private Socket? _bareListener;
    private DescriptorAcceptor? _acceptor;
    private IConnectionListener? _tlsListener;
    private Task? _accepting;
    private Task? _acceptingTls;

    internal MqttListener(IOptions<MqttOptions> options, IOptions<SocketTransportOptions> transport, ILoggerFactory loggers, ConnectionGate gate, MqttConnectionHandler handler, ServerCertificate? certificate, IOptions<TlsOptions> tls, IOptions<IngressOptions> ingress, ILogger<MqttListener> logger)
    {
        _options = options.Value;
        _factory = new GatedListenerFactory(transport, loggers, gate, refuseInProtocol: true);
        _transport = transport.Value;
        _gate = gate;
        _ingress = ingress.Value;
        _poller = _ingress.ReadinessPoller ? ReadinessPoller.Shared : null;
        _handler = handler;
        _certificate = tls.Value.Enabled ? certificate : null;
        _clientCertificates = _certificate is not null && _options.ClientCertificates.Enabled ? new MqttClientCertificates(_options.ClientCertificates) : null;
        _logger = logger;
    }

    /// <summary>The port the listener took (the configured one, or the one picked for 0); null before it started.</summary>
    public int? Port { get; private set; }

    /// <summary>The MQTT over TLS port (<c>Relay:Mqtt:TlsPort</c>, or the one picked for 0); null when none is served.</summary>
    public int? TlsPort { get; private set; }

    // The accept loops start on the thread pool: the host calls this on its caller's thread, and Kestrel's listener
    // awaits its first accept on whatever synchronisation context is current there (an embedder's UI or test context
    // then ran every accept, and the connection it starts, only when its thread was free: SynchronizationContextTests).

    /// <inheritdoc />
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (_ingress.OwnTransport && _options.OwnTransport)
        {
            // Relay's own transport: each connection on its bare socket, with no pipes or Kestrel connection of its own.
            var bare = _bareListener = await BindAsync(_options.Port, "Relay:Mqtt:Port", endpoint => ValueTask.FromResult(ListenSocket.Bind(_transport, endpoint))).ConfigureAwait(false);
            Port = (_bareListener.LocalEndPoint as IPEndPoint)?.Port;

            // With Relay's poller, connections are taken as bare descriptors (no runtime Socket each); else by the runtime.
            var acceptor = _acceptor = _poller is { } poller ? new DescriptorAcceptor(bare, poller, _transport.NoDelay, _logger) : null;
            _accepting = Task.Run(() => AcceptBareLoopAsync(bare, acceptor), CancellationToken.None);
        }
        else
        {
            var listener = _listener = await BindAsync(_options.Port, "Relay:Mqtt:Port", endpoint => _factory.BindAsync(endpoint, cancellationToken)).ConfigureAwait(false);
            Port = (_listener.EndPoint as IPEndPoint)?.Port;
            _accepting = Task.Run(() => AcceptLoopAsync(listener, tls: false), CancellationToken.None);
        }

        LogListening(_logger, Port ?? _options.Port);
        if (_certificate is not null && _options.TlsPort >= 0)
        {
            var tlsListener = _tlsListener = await BindAsync(_options.TlsPort, "Relay:Mqtt:TlsPort", endpoint => _factory.BindAsync(endpoint, cancellationToken)).ConfigureAwait(false);
            TlsPort = (_tlsListener.EndPoint as IPEndPoint)?.Port;
            LogListeningTls(_logger, TlsPort ?? _options.TlsPort);
            _acceptingTls = Task.Run(() => AcceptLoopAsync(tlsListener, tls: true), CancellationToken.None);
        }
    }

    private static async Task<T> BindAsync<T>(int port, string setting, Func<IPEndPoint, ValueTask<T>> bind)
    {
        try
        {
            return await bind(new IPEndPoint(IPAddress.IPv6Any, port)).ConfigureAwait(false);
        }
        catch (AddressInUseException ex)
        {
            throw new InvalidOperationException($"The MQTT listener cannot take TCP port {port}: it is in use (another MQTT broker, such as mosquitto, or a second Relay?). Stop that process, set {setting} to a free port, or set Relay:Mqtt:Enabled=false to serve no MQTT{(setting == "Relay:Mqtt:TlsPort" ? " (Relay:Mqtt:TlsPort=-1: no MQTT over TLS)" : string.Empty)}.", ex);
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or NotSupportedException)
        {
            // No IPv6 on this machine: every IPv4 address instead.
            return await bind(new IPEndPoint(IPAddress.Any, port)).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        _acceptor?.Stop();
        _bareListener?.Dispose();
        foreach (var listener in new[] { _listener, _tlsListener })
        {
            if (listener is not null)
            {
                await listener.UnbindAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        // Open connections are not waited for here: the node drains and aborts them as it stops (it stops after this).
        foreach (var accepting in new[] { _accepting, _acceptingTls })
        {
            if (accepting is not null)
            {
                await accepting.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        _acceptor?.Stop();
        _bareListener?.Dispose();
        foreach (var listener in new[] { _listener, _tlsListener })
        {
            if (listener is not null)
            {
                await listener.DisposeAsync().ConfigureAwait(false);
            }
        }

        _stopping.Dispose();
    }

    private async Task AcceptLoopAsync(IConnectionListener listener, bool tls)
    {
        try
        {
            while (await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false) is { } connection)
            {
                _ = tls ? ServeTlsAsync(connection) : ServeAsync(connection);
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
        catch (ObjectDisposedException)
        {
            // Unbound.
        }
    }

    /// <summary>
    /// Accepts on Relay's own transport, behind the node's connection cap as the gated listener does: a connection past
    /// the cap or its address's limit is served on a refusal slot, to answer its CONNECT with a refusal (CONNACK 0x97 on
    /// MQTT 5, 0x03 on 3.1.1, with the reason).
    /// </summary>
    private async Task AcceptBareLoopAsync(Socket listener, DescriptorAcceptor? acceptor)
    {
        try
        {
            while (true)
            {
                var (socket, remote) = await ListenSocket.AcceptBareAsync(listener, acceptor, _transport.NoDelay, _logger).ConfigureAwait(false);

                var address = _gate.Addresses.AddressOf(remote);
                var admission = _gate.TryEnter(address);
                if (admission == Admission.Admitted)
                {
                    ServeBare(socket, remote, address, refused: null);
                    continue;
                }

                // With every refusal slot busy, accepting waits: the backlog holds the flood, not our descriptors.
                try
                {
                    await _gate.RefusalSlots.WaitAsync(_stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    socket.Dispose();
                    return;
                }

                ServeBare(socket, remote, address: null, MqttConnectionHandler.RefusalOf(admission));
            }
        }
        catch (Exception ex) when (ListenSocket.IsUnbound(ex))
        {
            // Unbound.
        }
        catch (Exception ex)
        {
            LogAcceptFailed(_logger, Port, ex);
        }
    }

    /// <summary>
    /// Serves one connection on its bare socket. Nothing here awaits it: the connection's read loop calls
    /// <see cref="IBareConnectionOwner.EndedAsync"/> when it ends, so an idle connection holds no listener frame (152
    /// bytes each, docs/benchmarks.md, MQTT).
    /// </summary>
    private void ServeBare(BareSocket socket, EndPoint? remote, IPAddress? address, string? refused)
    {
        var transport = new BareSocketTransport(socket, _poller);
        try
        {
            _handler.Serve(transport, remote, refused, this, address);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The connection never started: it ends here.
            _ = EndBareAsync(transport, address, refused is not null, ex);
        }
    }

    /// <inheritdoc />
    Task IBareConnectionOwner.EndedAsync(BareSocketTransport transport, IPAddress? address, bool refused, Exception? failure) =>
        EndBareAsync(transport, address, refused, failure);

    /// <summary>A bare-socket connection ended: its socket is finished and it is counted out of the gate (or its refusal slot).</summary>
    private async Task EndBareAsync(BareSocketTransport transport, IPAddress? address, bool refused, Exception? failure)
    {
        try
        {
            if (failure is not null)
            {
                // The peer's port is gone with a reset connection (the descriptor keeps no address): its address then.
                LogConnectionFailed(_logger, transport.Remote ?? (address is null ? null : new IPEndPoint(address, 0)), failure);
            }

            // What was written (a DISCONNECT last) reaches the kernel, and the client reads it up to the end, before the
            // socket closes. A refused connection holds a refusal slot meanwhile, which the rest of a flood waits for in
            // the listen backlog: as an HTTP refusal, its CONNACK is given the refusal's short wait to be sent, what the
            // client sent is read away, and it closes without waiting for the client's end. Waiting for that held each
            // slot half a second when clients kept their sockets after the CONNACK: 1,350 refusals took 21 s, the backlog
            // (512) overflowed, and connects whose dropped SYNs were retried past 10 s got no answer (33 of 1,600 in CI);
            // before that the wait was the whole close timeout, and most of such a flood got none.
            await transport.FinishAsync(refused ? ConnectionGate.RefusalWait : _ingress.CloseTimeout, TimeProvider.System, waitForClose: !refused).ConfigureAwait(false);
        }
        finally
        {
            if (!refused)
            {
                _gate.Exit(address);
            }
            else
            {
                _gate.RefusalSlots.Release();
            }
        }
    }

    private async Task ServeAsync(ConnectionContext connection)
    {
        try
        {
            await _handler.OnConnectedAsync(connection).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogConnectionFailed(_logger, connection.RemoteEndPoint, ex);
        }
        finally
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// MQTT over TLS: the handshake, within <c>Relay:Mqtt:ConnectTimeout</c>, with the certificate served now (a renewed
    /// one is picked up by the next handshake), then the connection handler on the decrypted stream.
    /// </summary>
    private async Task ServeTlsAsync(ConnectionContext connection)
    {
        try
        {
            var ssl = new SslStream(new DuplexPipeStream(connection.Transport), leaveInnerStreamOpen: false);
            await using (ssl.ConfigureAwait(false))
            {
                var refused = MqttConnectionHandler.RefusalOf(connection);
                using (var handshake = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token))
                {
                    // A connection refused for its address holds a refusal slot: its handshake gets a few seconds at most.
                    handshake.CancelAfter(refused is null ? _options.ConnectTimeout : TimeSpan.FromTicks(Math.Min(_options.ConnectTimeout.Ticks, RefusedHandshakeTimeout.Ticks)));
                    try
                    {
                        var authentication = new SslServerAuthenticationOptions { ServerCertificateContext = _certificate!.Context };
                        if (_clientCertificates is { } clients)
                        {
                            // Asked for; a connection without one goes on to user name and password unless one is required.
                            authentication.ClientCertificateRequired = true;
                            authentication.RemoteCertificateValidationCallback = (_, presented, _, _) => presented is null
                                ? !clients.Required
                                : clients.IsValid(presented as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(presented.GetRawCertData()));
                        }

                        await ssl.AuthenticateAsServerAsync(authentication, handshake.Token).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (ex is AuthenticationException or IOException or OperationCanceledException or ObjectDisposedException)
                    {
                        LogHandshakeFailed(_logger, connection.RemoteEndPoint, ex.Message);
                        return;
                    }
                }

                // A valid client certificate names the connection's key (or, mapped to none, gets it refused at CONNECT).
                var certificateKey = _clientCertificates is { } known && ssl.RemoteCertificate is X509Certificate2 presentedCertificate ? known.KeyOf(presentedCertificate) : default;
                var pipe = new TlsPipe(PipeReader.Create(ssl, new StreamPipeReaderOptions(leaveOpen: true)), PipeWriter.Create(ssl, new StreamPipeWriterOptions(leaveOpen: true)));
                await _handler.ServeAsync(pipe, connection, certificateKey.CommonName is null ? null : new MqttCertificateIdentity(certificateKey.CommonName, certificateKey.Key), refused).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogConnectionFailed(_logger, connection.RemoteEndPoint, ex);
        }
        finally
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The decrypted side of a TLS connection, as the connection handler reads and writes it.</summary>
    private sealed class TlsPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    [LoggerMessage(EventId = 1442, Level = LogLevel.Information, Message = "MQTT over TLS listening on TCP port {Port} (Relay:Mqtt:TlsPort, certificate from Relay:Tls)")]
    private static partial void LogListeningTls(ILogger logger, int port);

    [LoggerMessage(EventId = 1443, Level = LogLevel.Debug, Message = "MQTT over TLS: handshake with {Remote} failed: {Reason}")]
    private static partial void LogHandshakeFailed(ILogger logger, EndPoint? remote, string reason);

    [LoggerMessage(EventId = 1440, Level = LogLevel.Information, Message = "MQTT listening on TCP port {Port} (Relay:Mqtt:Port)")]
    private static partial void LogListening(ILogger logger, int port);

    [LoggerMessage(EventId = 1444, Level = LogLevel.Warning, Message = "Accepting MQTT connections on TCP port {Port} failed; no new connections are taken there")]
    private static partial void LogAcceptFailed(ILogger logger, int? port, Exception exception);

    [LoggerMessage(EventId = 1441, Level = LogLevel.Warning, Message = "MQTT connection from {Remote} ended with an error")]
    private static partial void LogConnectionFailed(ILogger logger, EndPoint? remote, Exception exception);
}

/// <summary>
/// Who ends a bare-socket MQTT connection once its read loop has (the listener: the socket finished, the connection
/// counted out of the gate), called from the read loop's own frame so that no other frame awaits the connection.
/// </summary>
internal interface IBareConnectionOwner
{
    /// <param name="transport">The connection's socket.</param>
    /// <param name="address">The address it was counted against in the gate (null when it was refused at accept).</param>
    /// <param name="refused">Whether it was refused at accept (it holds a refusal slot, not a place in the gate).</param>
    /// <param name="failure">What ended it unexpectedly, to be logged, or null.</param>
    Task EndedAsync(BareSocketTransport transport, IPAddress? address, bool refused, Exception? failure);
}
