using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;

namespace Relay.Ingress.Connections;

/// <summary>
/// Binding and accepting for the listeners that serve connections on their bare sockets (Relay's own transport:
/// realtime upgrades, MQTT over TCP), with Kestrel's socket options, so a bare socket is set up as Kestrel's would be.
/// </summary>
internal static partial class ListenSocket
{
    /// <summary>How long accepting pauses after the system refused a connection (out of descriptors, say).</summary>
    internal static readonly TimeSpan AcceptRetryDelay = TimeSpan.FromMilliseconds(100);

    /// <summary>A listening socket on <paramref name="endpoint"/>; a port in use throws <see cref="AddressInUseException"/>, as Kestrel's transport does.</summary>
    public static Socket Bind(SocketTransportOptions options, EndPoint endpoint)
    {
        Socket? socket = null;
        try
        {
            socket = options.CreateBoundListenSocket(endpoint);
            socket.Listen(options.Backlog);
            return socket;
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket?.Dispose();
            throw new AddressInUseException(ex.Message, ex);
        }
    }

    /// <summary>
    /// The next connection with its peer's address: a bare descriptor taken by <paramref name="acceptor"/> where there is
    /// one (Relay's poller), else a socket the runtime accepted (<see cref="AcceptAsync"/>).
    /// </summary>
    public static async Task<(BareSocket Socket, EndPoint? Remote)> AcceptBareAsync(Socket listener, DescriptorAcceptor? acceptor, bool noDelay, ILogger logger)
    {
        if (acceptor is not null)
        {
            var (socket, peer) = await acceptor.AcceptAsync().ConfigureAwait(false);
            return (socket, peer);
        }

        var accepted = await AcceptAsync(listener, noDelay, logger).ConfigureAwait(false);
        return (new BareSocket(accepted), RemoteOf(accepted));
    }

    /// <summary>
    /// The next connection, with Nagle's algorithm as <paramref name="noDelay"/> says. A client that reset before it was
    /// taken is skipped; out of descriptors or buffers, accepting pauses (connections wait in the backlog until some
    /// close). Throws <see cref="ObjectDisposedException"/> or a <see cref="SocketException"/> (operation aborted) once
    /// <paramref name="listener"/> is closed.
    /// </summary>
    public static async Task<Socket> AcceptAsync(Socket listener, bool noDelay, ILogger logger)
    {
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = await listener.AcceptAsync().ConfigureAwait(false);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                // The client gave up before we took it.
                continue;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is not (SocketError.OperationAborted or SocketError.Interrupted or SocketError.NotSocket))
            {
                LogAcceptPaused(logger, LocalOf(listener), ex.SocketErrorCode);
                await Task.Delay(AcceptRetryDelay).ConfigureAwait(false);
                continue;
            }

            try
            {
                accepted.NoDelay = noDelay;
            }
            catch (SocketException)
            {
                // Reset already: nothing to serve.
                accepted.Dispose();
                continue;
            }

            return accepted;
        }
    }

    /// <summary>Whether <paramref name="ex"/> is how accepting ends once the listening socket is closed.</summary>
    public static bool IsUnbound(Exception ex) =>
        ex is ObjectDisposedException || (ex is SocketException socket && socket.SocketErrorCode == SocketError.OperationAborted);

    /// <summary>The peer's address for a log line; a socket already closed has none to give.</summary>
    public static EndPoint? RemoteOf(Socket socket)
    {
        try
        {
            return socket.RemoteEndPoint;
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
        {
            return null;
        }
    }

    /// <summary>The listening socket's address for a log line; a socket already closed has none to give.</summary>
    public static EndPoint? LocalOf(Socket socket)
    {
        try
        {
            return socket.LocalEndPoint;
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
        {
            return null;
        }
    }

    [LoggerMessage(EventId = 1303, Level = LogLevel.Warning, Message = "Accepting on {EndPoint} failed ({Error}); retrying shortly")]
    internal static partial void LogAcceptPaused(ILogger logger, EndPoint? endPoint, SocketError error);
}
