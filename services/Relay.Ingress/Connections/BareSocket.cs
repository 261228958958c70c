using System.Net;
using System.Net.Sockets;

namespace Relay.Ingress.Connections;

/// <summary>
/// A connection's socket on Relay's own transport: its descriptor, and the runtime's <see cref="System.Net.Sockets.Socket"/>
/// over it only while something needs the runtime (a send the kernel could not take at once, the wait of a drain at
/// close, a platform without <see cref="SocketCalls"/>). A connection accepted as a bare descriptor
/// (<see cref="DescriptorAcceptor"/>) and served through Relay's poller never makes one: the <c>Socket</c> and the
/// peer's address the runtime keeps for it were ~0.2 KB of heap per idle connection (docs/benchmarks.md, MQTT).
/// </summary>
internal sealed class BareSocket
{
    private Socket? _socket;

    /// <summary>A socket the runtime accepted: the descriptor is its handle.</summary>
    public BareSocket(Socket socket)
    {
        _socket = socket;
        Handle = socket.SafeHandle;
    }

    /// <summary>A descriptor accepted without the runtime (it owns <paramref name="handle"/> from here).</summary>
    public BareSocket(SafeSocketHandle handle) => Handle = handle;

    /// <summary>The descriptor (closed once <see cref="Dispose"/> has run).</summary>
    public SafeSocketHandle Handle { get; }

    /// <summary>Whether the runtime's socket was made (tests: a connection served through the poller never makes one).</summary>
    internal bool HasRuntimeSocket => Volatile.Read(ref _socket) is not null;

    /// <summary>
    /// The runtime's socket over the descriptor, made on first use; throws <see cref="ObjectDisposedException"/> once
    /// the connection is closed.
    /// </summary>
    public Socket Socket
    {
        get
        {
            if (Volatile.Read(ref _socket) is { } socket)
            {
                return socket;
            }

            lock (this)
            {
                ObjectDisposedException.ThrowIf(Handle.IsClosed, this);
                return _socket ??= new Socket(Handle);
            }
        }
    }

    /// <summary>The peer's address and port for a log line, or null once the socket is gone.</summary>
    public EndPoint? Remote => Volatile.Read(ref _socket) is { } socket ? ListenSocket.RemoteOf(socket) : SocketCalls.PeerOf(Handle);

    /// <summary>Shuts a direction of the connection down; throws <see cref="SocketException"/> or <see cref="ObjectDisposedException"/> when it is gone.</summary>
    public void Shutdown(SocketShutdown how)
    {
        if (Volatile.Read(ref _socket) is { } socket)
        {
            socket.Shutdown(how);
        }
        else
        {
            SocketCalls.Shutdown(Handle, how);
        }
    }

    /// <summary>Closes the connection (the runtime's socket too, ending what it has pending); a second call does nothing.</summary>
    public void Dispose()
    {
        lock (this)
        {
            _socket?.Dispose();
            Handle.Dispose();
        }
    }
}
