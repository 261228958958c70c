using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Relay.Ingress.Connections;

/// <summary>
/// The system calls Relay's own transport makes on a socket's descriptor (Linux): non-blocking <c>recv</c> and
/// <c>send</c> (<c>MSG_DONTWAIT</c>) for the sockets that wait in <see cref="ReadinessPoller"/>, and <c>accept4</c>,
/// <c>shutdown</c>, <c>getpeername</c> and <c>TCP_NODELAY</c> for connections held as a descriptor with no runtime
/// <see cref="Socket"/> (<see cref="BareSocket"/>). The runtime's own non-blocking calls need
/// <see cref="Socket.Blocking"/> false, and setting it makes the socket's <c>SocketAsyncContext</c> (152 bytes per
/// connection, held for its life); these need nothing but the descriptor. Each call holds a reference on the socket's
/// handle, so a closed socket throws <see cref="ObjectDisposedException"/> rather than touching a descriptor number
/// since reused.
/// </summary>
internal static unsafe partial class SocketCalls
{
    private const int MsgPeek = 0x2;
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int Eintr = 4;
    private const int Eagain = 11;
    private const int Epipe = 32;
    private const int Econnreset = 104;
    private const int Econnaborted = 103;
    private const int Emfile = 24;
    private const int Enfile = 23;
    private const int Enobufs = 105;
    private const int Enomem = 12;
    private const int Eproto = 71;
    private const int Enoprotoopt = 92;
    private const int Ehostdown = 112;
    private const int Enonet = 64;
    private const int Ehostunreach = 113;
    private const int Eopnotsupp = 95;
    private const int Enetunreach = 101;
    private const int Enetdown = 100;
    private const int SockCloexec = 0x80000;
    private const int IpProtoTcp = 6;
    private const int TcpNoDelay = 1;
    private const int SolSocket = 1;
    private const int SoTimestampNs = 35;
    private const int AfInet = 2;
    private const int AfInet6 = 10;
    private const int SockaddrSize = 128;

    /// <summary>Whether these calls are there (Linux).</summary>
    public static bool IsSupported { get; } = OperatingSystem.IsLinux();

    /// <summary>
    /// Takes what the kernel has, without waiting: the bytes read (0 with <see cref="SocketError.Success"/>: the peer's
    /// end of the stream), or 0 with <see cref="SocketError.WouldBlock"/> (nothing there) or the failure.
    /// </summary>
    public static int Receive(SafeSocketHandle handle, Span<byte> buffer, out SocketError error) =>
        Transfer(handle, ref MemoryMarshal.GetReference(buffer), buffer.Length, send: false, MsgDontWait, out error);

    /// <summary>
    /// As <see cref="Receive"/>, with <c>recvmsg</c>: on a socket that <see cref="StampArrivals"/> was called for,
    /// <paramref name="arrivedTicks"/> is when the last of the bytes read reached the host (the kernel's receive
    /// timestamp, UTC ticks: <see cref="DateTime.UtcNow"/>'s clock), or 0 when the kernel gave none.
    /// </summary>
    public static int ReceiveStamped(SafeSocketHandle handle, Span<byte> buffer, out SocketError error, out long arrivedTicks)
    {
        arrivedTicks = 0;
        using var held = new HeldDescriptor(handle);
        fixed (byte* bytes = &MemoryMarshal.GetReference(buffer))
        {
            // struct msghdr with one iovec and room for one SCM_TIMESTAMPNS (a cmsghdr of 16 bytes and a timespec).
            var control = stackalloc byte[ControlBytes];
            var vector = new IoVector { Base = bytes, Length = (nuint)buffer.Length };
            var header = new MessageHeader { Vectors = &vector, VectorCount = 1, Control = control, ControlLength = ControlBytes };
            while (true)
            {
                var count = RecvMsg(held.Fd, &header, MsgDontWait);
                if (count >= 0)
                {
                    error = SocketError.Success;
                    arrivedTicks = ArrivalOf(control, (int)Math.Min(header.ControlLength, ControlBytes));
                    return (int)count;
                }

                if (Failed(out error))
                {
                    return 0;
                }

                header.ControlLength = ControlBytes;
            }
        }
    }

    /// <summary>
    /// Asks the kernel to stamp what this socket receives with the time it arrived (<c>SO_TIMESTAMPNS</c>), read by
    /// <see cref="ReceiveStamped"/>; false when the connection is gone or the kernel refused.
    /// </summary>
    public static bool StampArrivals(SafeSocketHandle handle)
    {
        if (!Environment.Is64BitProcess)
        {
            return false;
        }

        try
        {
            using var held = new HeldDescriptor(handle);
            var on = 1;
            return SetSockOpt(held.Fd, SolSocket, SoTimestampNs, &on, sizeof(int)) == 0;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    private const int ControlBytes = 64;

    // The SCM_TIMESTAMPNS among the control messages (struct cmsghdr: a size_t length, an int level, an int type, then
    // the data, each message aligned to 8 bytes), as UTC ticks; 0 when there is none or it is zero.
    private static long ArrivalOf(byte* control, int length)
    {
        var offset = 0;
        while (offset + 16 <= length)
        {
            var size = (long)*(nuint*)(control + offset);
            var level = *(int*)(control + offset + 8);
            var type = *(int*)(control + offset + 12);
            if (size < 16 || offset + size > length)
            {
                return 0;
            }

            if (level == SolSocket && type == SoTimestampNs && size >= 32)
            {
                var seconds = *(long*)(control + offset + 16);
                var nanoseconds = *(long*)(control + offset + 24);
                return seconds <= 0 ? 0 : DateTime.UnixEpoch.Ticks + (seconds * TimeSpan.TicksPerSecond) + (nanoseconds / 100);
            }

            offset += (int)((size + 7) & ~7L);
        }

        return 0;
    }

    private struct IoVector
    {
        public byte* Base;
        public nuint Length;
    }

    // struct msghdr on 64-bit Linux.
    private struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVector* Vectors;
        public nuint VectorCount;
        public byte* Control;
        public nuint ControlLength;
        public int Flags;
    }

    /// <summary>
    /// Looks at what the kernel has without taking it (<c>MSG_PEEK</c>) and without waiting: as <see cref="Receive"/>,
    /// and the bytes stay in the kernel's buffer for the next read.
    /// </summary>
    public static int Peek(SafeSocketHandle handle, Span<byte> buffer, out SocketError error) =>
        Transfer(handle, ref MemoryMarshal.GetReference(buffer), buffer.Length, send: false, MsgDontWait | MsgPeek, out error);

    /// <summary>Gives the kernel what it takes at once: the bytes it took (0 with <see cref="SocketError.WouldBlock"/>: none), or 0 with the failure.</summary>
    public static int Send(SafeSocketHandle handle, ReadOnlySpan<byte> buffer, out SocketError error) =>
        Transfer(handle, ref MemoryMarshal.GetReference(buffer), buffer.Length, send: true, MsgDontWait | MsgNoSignal, out error);

    /// <summary>
    /// Takes the next connection waiting on <paramref name="listener"/> (a non-blocking listening socket) as a bare
    /// descriptor, with the peer's address in <paramref name="remote"/>; null with <paramref name="error"/>
    /// <see cref="SocketError.WouldBlock"/> when none is waiting, <see cref="SocketError.ConnectionAborted"/> when the
    /// one waiting is gone already (take the next), <see cref="SocketError.TooManyOpenSockets"/> or
    /// <see cref="SocketError.NoBufferSpaceAvailable"/> when the system is out of descriptors or memory (wait, then try
    /// again), or another failure. Throws <see cref="ObjectDisposedException"/> once the listener is closed.
    /// </summary>
    public static SafeSocketHandle? Accept(SafeSocketHandle listener, out IPEndPoint? remote, out SocketError error)
    {
        remote = null;
        using var held = new HeldDescriptor(listener);
        var address = stackalloc byte[SockaddrSize];
        while (true)
        {
            var length = (uint)SockaddrSize;
            var descriptor = Accept4(held.Fd, address, &length, SockCloexec);
            if (descriptor >= 0)
            {
                error = SocketError.Success;
                remote = EndPointOf(new ReadOnlySpan<byte>(address, (int)Math.Min(length, SockaddrSize)));
                return new SafeSocketHandle(descriptor, ownsHandle: true);
            }

            var errno = Marshal.GetLastPInvokeError();
            error = errno switch
            {
                Eintr => SocketError.Interrupted,
                Eagain => SocketError.WouldBlock,
                Emfile or Enfile => SocketError.TooManyOpenSockets,
                Enobufs or Enomem => SocketError.NoBufferSpaceAvailable,

                // The connection waiting failed before it was taken (accept(2) passes on its network error): the next.
                Econnaborted or Econnreset or Eproto or Enoprotoopt or Ehostdown or Enonet or Ehostunreach or Eopnotsupp or Enetunreach or Enetdown => SocketError.ConnectionAborted,
                _ => SocketError.SocketError,
            };
            if (error != SocketError.Interrupted)
            {
                return null;
            }
        }
    }

    /// <summary>Turns Nagle's algorithm off (<paramref name="noDelay"/>) or on; false when the connection is gone.</summary>
    public static bool SetNoDelay(SafeSocketHandle handle, bool noDelay)
    {
        try
        {
            using var held = new HeldDescriptor(handle);
            var value = noDelay ? 1 : 0;
            return SetSockOpt(held.Fd, IpProtoTcp, TcpNoDelay, &value, sizeof(int)) == 0;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Shuts a direction down, as <see cref="Socket.Shutdown"/> does; throws <see cref="SocketException"/> when the connection is gone.</summary>
    public static void Shutdown(SafeSocketHandle handle, SocketShutdown how)
    {
        using var held = new HeldDescriptor(handle);
        if (ShutdownSocket(held.Fd, (int)how) != 0)
        {
            Failed(out var error);
            throw new SocketException((int)(error == SocketError.SocketError ? SocketError.NotConnected : error));
        }
    }

    /// <summary>The peer's address and port, or null once the connection is gone (a log line's; asks the kernel each time).</summary>
    public static IPEndPoint? PeerOf(SafeSocketHandle handle)
    {
        try
        {
            using var held = new HeldDescriptor(handle);
            var address = stackalloc byte[SockaddrSize];
            var length = (uint)SockaddrSize;
            return GetPeerName(held.Fd, address, &length) == 0
                ? EndPointOf(new ReadOnlySpan<byte>(address, (int)Math.Min(length, SockaddrSize)))
                : null;
        }
        catch (ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>A <c>sockaddr_in</c> or <c>sockaddr_in6</c> as an end point (the family in host order, the port in network order); null for any other family.</summary>
    internal static IPEndPoint? EndPointOf(ReadOnlySpan<byte> address)
    {
        if (address.Length < 8)
        {
            return null;
        }

        var family = MemoryMarshal.Read<ushort>(address);
        var port = BinaryPrimitives.ReadUInt16BigEndian(address[2..]);
        if (family == AfInet)
        {
            return new IPEndPoint(new IPAddress(address.Slice(4, 4)), port);
        }

        if (family == AfInet6 && address.Length >= 28)
        {
            return new IPEndPoint(new IPAddress(address.Slice(8, 16), MemoryMarshal.Read<uint>(address[24..])), port);
        }

        return null;
    }

    private static int Transfer(SafeSocketHandle handle, ref byte start, int length, bool send, int flags, out SocketError error)
    {
        using var held = new HeldDescriptor(handle);
        fixed (byte* bytes = &start)
        {
            while (true)
            {
                var count = send ? SendBytes(held.Fd, bytes, (nuint)length, flags) : Recv(held.Fd, bytes, (nuint)length, flags);
                if (count >= 0)
                {
                    error = SocketError.Success;
                    return (int)count;
                }

                if (Failed(out error))
                {
                    return 0;
                }
            }
        }
    }

    /// <summary>The error of a call that returned -1; false when it was interrupted (call again).</summary>
    private static bool Failed(out SocketError error)
    {
        var errno = Marshal.GetLastPInvokeError();
        error = errno switch
        {
            Eintr => SocketError.Interrupted,
            Eagain => SocketError.WouldBlock,
            Epipe => SocketError.Shutdown,
            Econnreset => SocketError.ConnectionReset,
            _ => SocketError.SocketError,
        };
        return errno != Eintr;
    }

    /// <summary>
    /// A descriptor held open for one call: its handle's reference is taken (a closed handle throws
    /// <see cref="ObjectDisposedException"/>), so a number closed and reused meanwhile is never touched.
    /// </summary>
    internal readonly ref struct HeldDescriptor
    {
        private readonly SafeHandle _handle;

        public HeldDescriptor(SafeHandle handle)
        {
            var held = false;
            handle.DangerousAddRef(ref held);
            _handle = handle;
            Fd = (int)handle.DangerousGetHandle();
        }

        /// <summary>The descriptor's number, valid until <see cref="Dispose"/>.</summary>
        public int Fd { get; }

        public void Dispose() => _handle.DangerousRelease();
    }

    [LibraryImport("libc", EntryPoint = "accept4", SetLastError = true)]
    private static partial int Accept4(int fd, byte* address, uint* length, int flags);

    [LibraryImport("libc", EntryPoint = "setsockopt", SetLastError = true)]
    private static partial int SetSockOpt(int fd, int level, int name, void* value, uint length);

    [LibraryImport("libc", EntryPoint = "shutdown", SetLastError = true)]
    private static partial int ShutdownSocket(int fd, int how);

    [LibraryImport("libc", EntryPoint = "getpeername", SetLastError = true)]
    private static partial int GetPeerName(int fd, byte* address, uint* length);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Recv(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    private static partial nint RecvMsg(int fd, MessageHeader* message, int flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint SendBytes(int fd, byte* buffer, nuint length, int flags);
}
