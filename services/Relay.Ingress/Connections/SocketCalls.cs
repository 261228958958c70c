using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Relay.Ingress.Connections;

/// <summary>
/// Non-blocking <c>recv</c> and <c>send</c> on a socket's descriptor (Linux: <c>MSG_DONTWAIT</c>), for the sockets of
/// Relay's own transport that wait in <see cref="ReadinessPoller"/>. The runtime's own non-blocking calls need
/// <see cref="Socket.Blocking"/> false, and setting it makes the socket's <c>SocketAsyncContext</c> (152 bytes per
/// connection, held for its life); these need nothing but the descriptor. Each call holds a reference on the socket's
/// handle, so a closed socket throws <see cref="ObjectDisposedException"/> rather than touching a descriptor number
/// since reused.
/// </summary>
internal static unsafe partial class SocketCalls
{
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int Eintr = 4;
    private const int Eagain = 11;
    private const int Epipe = 32;
    private const int Econnreset = 104;

    /// <summary>Whether these calls are there (Linux).</summary>
    public static bool IsSupported { get; } = OperatingSystem.IsLinux();

    /// <summary>
    /// Takes what the kernel has, without waiting: the bytes read (0 with <see cref="SocketError.Success"/>: the peer's
    /// end of the stream), or 0 with <see cref="SocketError.WouldBlock"/> (nothing there) or the failure.
    /// </summary>
    public static int Receive(Socket socket, Span<byte> buffer, out SocketError error) =>
        Transfer(socket, ref MemoryMarshal.GetReference(buffer), buffer.Length, send: false, out error);

    /// <summary>Gives the kernel what it takes at once: the bytes it took (0 with <see cref="SocketError.WouldBlock"/>: none), or 0 with the failure.</summary>
    public static int Send(Socket socket, ReadOnlySpan<byte> buffer, out SocketError error) =>
        Transfer(socket, ref MemoryMarshal.GetReference(buffer), buffer.Length, send: true, out error);

    private static int Transfer(Socket socket, ref byte start, int length, bool send, out SocketError error)
    {
        var handle = socket.SafeHandle;
        var held = false;
        try
        {
            handle.DangerousAddRef(ref held);
            var fd = (int)handle.DangerousGetHandle();
            fixed (byte* bytes = &start)
            {
                while (true)
                {
                    var count = send
                        ? SendBytes(fd, bytes, (nuint)length, MsgDontWait | MsgNoSignal)
                        : Recv(fd, bytes, (nuint)length, MsgDontWait);
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
        finally
        {
            if (held)
            {
                handle.DangerousRelease();
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

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Recv(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint SendBytes(int fd, byte* buffer, nuint length, int flags);
}
