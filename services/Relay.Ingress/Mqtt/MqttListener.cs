using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Ingress.Connections;
using Relay.ServiceDefaults.Tls;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// MQTT over TCP on <c>Relay:Mqtt:Port</c>, on Kestrel's socket transport behind the node's connection cap (the gated
/// listener every non-realtime endpoint uses). It binds beside Kestrel rather than as a Kestrel endpoint: an endpoint
/// configured in code makes Kestrel ignore the URLs the hosts are started with (<c>--urls</c>, <c>ASPNETCORE_URLS</c>).
/// A port in use fails start-up with a message saying which setting to change. With a certificate (<c>Relay:Tls</c>) a
/// second listener on <c>Relay:Mqtt:TlsPort</c> (8883) serves MQTT over TLS: its handshake runs here, with the host's
/// certificate as it is reloaded, and the decrypted stream goes to the same connection handler.
/// </summary>
public sealed partial class MqttListener : IHostedService, IAsyncDisposable
{
    /// <summary>The TLS handshake a connection refused for its address may take before its CONNACK: it holds a refusal slot meanwhile.</summary>
    private static readonly TimeSpan RefusedHandshakeTimeout = TimeSpan.FromSeconds(2);

    private readonly MqttOptions _options;
    private readonly GatedListenerFactory _factory;
    private readonly MqttConnectionHandler _handler;
    private readonly ServerCertificate? _certificate;
    private readonly MqttClientCertificates? _clientCertificates;
    private readonly ILogger<MqttListener> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private IConnectionListener? _listener;
    private IConnectionListener? _tlsListener;
    private Task? _accepting;
    private Task? _acceptingTls;

    internal MqttListener(IOptions<MqttOptions> options, IOptions<SocketTransportOptions> transport, ILoggerFactory loggers, ConnectionGate gate, MqttConnectionHandler handler, ServerCertificate? certificate, IOptions<TlsOptions> tls, ILogger<MqttListener> logger)
    {
        _options = options.Value;
        _factory = new GatedListenerFactory(transport, loggers, gate, refuseInProtocol: true);
        _handler = handler;
        _certificate = tls.Value.Enabled ? certificate : null;
        _clientCertificates = _certificate is not null && _options.ClientCertificates.Enabled ? new MqttClientCertificates(_options.ClientCertificates) : null;
        _logger = logger;
    }

    /// <summary>The port the listener took (the configured one, or the one picked for 0); null before it started.</summary>
    public int? Port { get; private set; }

    /// <summary>The MQTT over TLS port (<c>Relay:Mqtt:TlsPort</c>, or the one picked for 0); null when none is served.</summary>
    public int? TlsPort { get; private set; }

    /// <inheritdoc />
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _listener = await BindAsync(_options.Port, "Relay:Mqtt:Port", cancellationToken).ConfigureAwait(false);
        Port = (_listener.EndPoint as IPEndPoint)?.Port;
        LogListening(_logger, Port ?? _options.Port);
        _accepting = AcceptLoopAsync(_listener, tls: false);
        if (_certificate is not null && _options.TlsPort >= 0)
        {
            _tlsListener = await BindAsync(_options.TlsPort, "Relay:Mqtt:TlsPort", cancellationToken).ConfigureAwait(false);
            TlsPort = (_tlsListener.EndPoint as IPEndPoint)?.Port;
            LogListeningTls(_logger, TlsPort ?? _options.TlsPort);
            _acceptingTls = AcceptLoopAsync(_tlsListener, tls: true);
        }
    }

    private async Task<IConnectionListener> BindAsync(int port, string setting, CancellationToken cancellationToken)
    {
        try
        {
            return await _factory.BindAsync(new IPEndPoint(IPAddress.IPv6Any, port), cancellationToken).ConfigureAwait(false);
        }
        catch (AddressInUseException ex)
        {
            throw new InvalidOperationException($"The MQTT listener cannot take TCP port {port}: it is in use (another MQTT broker, such as mosquitto, or a second Relay?). Stop that process, set {setting} to a free port, or set Relay:Mqtt:Enabled=false to serve no MQTT{(setting == "Relay:Mqtt:TlsPort" ? " (Relay:Mqtt:TlsPort=-1: no MQTT over TLS)" : string.Empty)}.", ex);
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or NotSupportedException)
        {
            // No IPv6 on this machine: every IPv4 address instead.
            return await _factory.BindAsync(new IPEndPoint(IPAddress.Any, port), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
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

    [LoggerMessage(EventId = 1441, Level = LogLevel.Warning, Message = "MQTT connection from {Remote} ended with an error")]
    private static partial void LogConnectionFailed(ILogger logger, EndPoint? remote, Exception exception);
}
