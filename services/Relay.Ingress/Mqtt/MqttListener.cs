using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Ingress.Connections;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// MQTT over TCP on <c>Relay:Mqtt:Port</c>, on Kestrel's socket transport behind the node's connection cap (the gated
/// listener every non-realtime endpoint uses). It binds beside Kestrel rather than as a Kestrel endpoint: an endpoint
/// configured in code makes Kestrel ignore the URLs the hosts are started with (<c>--urls</c>, <c>ASPNETCORE_URLS</c>).
/// A port in use fails start-up with a message saying which setting to change.
/// </summary>
public sealed partial class MqttListener : IHostedService, IAsyncDisposable
{
    private readonly MqttOptions _options;
    private readonly GatedListenerFactory _factory;
    private readonly ConnectionHandler _handler;
    private readonly ILogger<MqttListener> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private IConnectionListener? _listener;
    private Task? _accepting;

    internal MqttListener(IOptions<MqttOptions> options, IOptions<SocketTransportOptions> transport, ILoggerFactory loggers, ConnectionGate gate, MqttConnectionHandler handler, ILogger<MqttListener> logger)
    {
        _options = options.Value;
        _factory = new GatedListenerFactory(transport, loggers, gate);
        _handler = handler;
        _logger = logger;
    }

    /// <summary>The port the listener took (the configured one, or the one picked for 0); null before it started.</summary>
    public int? Port { get; private set; }

    /// <inheritdoc />
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            _listener = await _factory.BindAsync(new IPEndPoint(IPAddress.IPv6Any, _options.Port), cancellationToken).ConfigureAwait(false);
        }
        catch (AddressInUseException ex)
        {
            throw new InvalidOperationException($"The MQTT listener cannot take TCP port {_options.Port}: it is in use (another MQTT broker, such as mosquitto, or a second Relay?). Stop that process, set Relay:Mqtt:Port to a free port, or set Relay:Mqtt:Enabled=false to serve no MQTT.", ex);
        }
        catch (Exception ex) when (ex is System.Net.Sockets.SocketException or NotSupportedException)
        {
            // No IPv6 on this machine: every IPv4 address instead.
            _listener = await _factory.BindAsync(new IPEndPoint(IPAddress.Any, _options.Port), cancellationToken).ConfigureAwait(false);
        }

        Port = (_listener.EndPoint as IPEndPoint)?.Port;
        LogListening(_logger, Port ?? _options.Port);
        _accepting = AcceptLoopAsync(_listener);
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_listener is not null)
        {
            await _listener.UnbindAsync(cancellationToken).ConfigureAwait(false);
        }

        // Open connections are not waited for here: the node drains and aborts them as it stops (it stops after this).
        if (_accepting is not null)
        {
            await _accepting.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_listener is not null)
        {
            await _listener.DisposeAsync().ConfigureAwait(false);
        }

        _stopping.Dispose();
    }

    private async Task AcceptLoopAsync(IConnectionListener listener)
    {
        try
        {
            while (await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false) is { } connection)
            {
                _ = ServeAsync(connection);
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

    [LoggerMessage(EventId = 1440, Level = LogLevel.Information, Message = "MQTT listening on TCP port {Port} (Relay:Mqtt:Port)")]
    private static partial void LogListening(ILogger logger, int port);

    [LoggerMessage(EventId = 1441, Level = LogLevel.Warning, Message = "MQTT connection from {Remote} ended with an error")]
    private static partial void LogConnectionFailed(ILogger logger, EndPoint? remote, Exception exception);
}
