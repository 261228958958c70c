using System.Buffers;
using System.Net.Sockets;

namespace Relay.Ingress.Connections;

/// <summary>What a connection accepted past the cap gets: probes are still served, everything else the 503 refusal.</summary>
internal static class SocketRefusal
{
    /// <summary>The first byte of a TLS handshake: such a client cannot read a plain-text answer.</summary>
    private const byte TlsHandshake = 0x16;

    /// <summary>
    /// Liveness, readiness and metrics stay reachable at the cap (within the refusal budget): an orchestrator that
    /// cannot probe a node under a connection flood would restart it, and <c>/readyz</c> says the node is full.
    /// </summary>
    public static bool IsProbe(ReadOnlySpan<byte> head) =>
        head.StartsWith("GET /healthz"u8) || head.StartsWith("GET /readyz"u8) || head.StartsWith("GET /metrics"u8);

    /// <summary>Waits (up to <see cref="ConnectionGate.RefusalWait"/>) for the request's first bytes and tells whether it is a probe; nothing is consumed.</summary>
    public static async Task<bool> IsProbeAsync(Socket socket)
    {
        var head = ArrayPool<byte>.Shared.Rent(16);
        try
        {
            using var wait = new CancellationTokenSource(ConnectionGate.RefusalWait);
            var count = await socket.ReceiveAsync(head.AsMemory(0, 16), SocketFlags.Peek, wait.Token).ConfigureAwait(false);
            return IsProbe(head.AsSpan(0, count));
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(head);
        }
    }

    /// <summary>Reads the request away and sends <paramref name="refusal"/>; the caller closes the socket.</summary>
    public static async Task AnswerAsync(Socket socket, byte[] refusal)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(4096);
        try
        {
            // Closing a socket with unread input resets the connection, and a reset can destroy the answer before the
            // client reads it: so the request is read first.
            using var wait = new CancellationTokenSource(ConnectionGate.RefusalWait);
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, wait.Token).ConfigureAwait(false);
            if (read == 0 || buffer[0] == TlsHandshake)
            {
                return;
            }

            while (socket.Available > 0 && await socket.ReceiveAsync(buffer, SocketFlags.None, wait.Token).ConfigureAwait(false) > 0)
            {
            }

            // With nothing left unread, the close that follows is an orderly one (FIN), never a reset.
            await socket.SendAsync(refusal, SocketFlags.None, wait.Token).ConfigureAwait(false);
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // Gone, or too slow to be worth more of a descriptor's time.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
