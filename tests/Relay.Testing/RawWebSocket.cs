using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Relay.Testing;

/// <summary>
/// A WebSocket client written byte by byte over a plain TCP socket, for what a framework client hides or does on its
/// own: sending control frames at will, answering pings only when the test reads, and a small receive buffer so
/// the server feels a reader that pauses. Every read has a timeout.
/// </summary>
public sealed class RawWebSocket : IAsyncDisposable
{
    private readonly NetworkStream _stream;
    private readonly byte[] _header = new byte[14];

    private RawWebSocket(NetworkStream stream) => _stream = stream;

    /// <summary>The connection's stream (write whole frames only; see <see cref="Frame"/>).</summary>
    public Stream Stream => _stream;

    /// <summary>
    /// Connects to <paramref name="realtimeUri"/> (credentials in its query), upgrades, and reads the <c>connected</c> frame.
    /// </summary>
    /// <param name="realtimeUri">The server's <c>ws://</c> realtime endpoint.</param>
    /// <param name="receiveBufferBytes">The socket's receive buffer; a small one makes the server's sends back up as soon as the test stops reading.</param>
    /// <param name="source">The loopback address to connect from (127.0.0.2, …: another client address to the server); the default one when null.</param>
    public static async Task<RawWebSocket> ConnectAsync(Uri realtimeUri, int? receiveBufferBytes = null, IPAddress? source = null)
    {
        ArgumentNullException.ThrowIfNull(realtimeUri);
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (source is not null)
        {
            socket.Bind(new IPEndPoint(source, 0));
        }

        if (receiveBufferBytes is { } bytes)
        {
            socket.ReceiveBufferSize = bytes;
        }

        try
        {
            await socket.ConnectAsync(IPAddress.Loopback, realtimeUri.Port).WaitAsync(TestSocket.DefaultTimeout).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var client = new RawWebSocket(new NetworkStream(socket, ownsSocket: true));
        try
        {
            var request = $"GET {realtimeUri.PathAndQuery} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
            await client._stream.WriteAsync(Encoding.ASCII.GetBytes(request)).AsTask().WaitAsync(TestSocket.DefaultTimeout).ConfigureAwait(false);
            var head = new StringBuilder();
            var one = new byte[1];
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
            {
                if (await client._stream.ReadAsync(one).AsTask().WaitAsync(TestSocket.DefaultTimeout).ConfigureAwait(false) != 1)
                {
                    throw new IOException("the server closed the connection during the upgrade: " + head);
                }

                head.Append((char)one[0]);
            }

            if (!head.ToString().StartsWith("HTTP/1.1 101", StringComparison.Ordinal))
            {
                throw new InvalidOperationException("the upgrade was refused: " + head);
            }

            var connected = await client.ReadJsonAsync().ConfigureAwait(false);
            if (connected.GetProperty("type").GetString() != "connected")
            {
                throw new InvalidOperationException("first frame was not 'connected': " + connected.GetRawText());
            }

            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>One masked client frame (opcode 0x1 text, 0x9 ping, 0xA pong, …).</summary>
    public static byte[] Frame(int opcode, ReadOnlySpan<byte> payload)
    {
        var headerLength = payload.Length < 126 ? 2 : payload.Length <= ushort.MaxValue ? 4 : 10;
        var frame = new byte[headerLength + 4 + payload.Length];
        frame[0] = (byte)(0x80 | opcode);
        if (headerLength == 2)
        {
            frame[1] = (byte)(0x80 | payload.Length);
        }
        else if (headerLength == 4)
        {
            frame[1] = 0x80 | 126;
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), (ushort)payload.Length);
        }
        else
        {
            frame[1] = 0x80 | 127;
            BinaryPrimitives.WriteUInt64BigEndian(frame.AsSpan(2), (ulong)payload.Length);
        }

        ReadOnlySpan<byte> mask = [0x11, 0x22, 0x33, 0x44];
        mask.CopyTo(frame.AsSpan(headerLength));
        for (var i = 0; i < payload.Length; i++)
        {
            frame[headerLength + 4 + i] = (byte)(payload[i] ^ mask[i & 3]);
        }

        return frame;
    }

    /// <summary>Sends one frame.</summary>
    public Task SendFrameAsync(int opcode, ReadOnlySpan<byte> payload) => WriteAsync(Frame(opcode, payload));

    /// <summary>Sends a text frame.</summary>
    public Task SendTextAsync(string text) => SendFrameAsync(0x1, Encoding.UTF8.GetBytes(text));

    /// <summary>Writes bytes as they are (whole frames).</summary>
    public Task WriteAsync(ReadOnlyMemory<byte> bytes) => _stream.WriteAsync(bytes).AsTask().WaitAsync(TestSocket.DefaultTimeout);

    /// <summary>Reads the next frame, whatever its opcode.</summary>
    public async Task<(int Opcode, byte[] Payload)> ReadFrameAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TestSocket.DefaultTimeout);
        await _stream.ReadExactlyAsync(_header.AsMemory(0, 2), cts.Token).ConfigureAwait(false);
        var opcode = _header[0] & 0x0F;
        long length = _header[1] & 0x7F;
        if (length == 126)
        {
            await _stream.ReadExactlyAsync(_header.AsMemory(2, 2), cts.Token).ConfigureAwait(false);
            length = BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(2));
        }
        else if (length == 127)
        {
            await _stream.ReadExactlyAsync(_header.AsMemory(2, 8), cts.Token).ConfigureAwait(false);
            length = (long)BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(2));
        }

        var payload = new byte[length];
        await _stream.ReadExactlyAsync(payload, cts.Token).ConfigureAwait(false);
        return (opcode, payload);
    }

    /// <summary>Reads frames until a text frame comes, answering pings on the way, and parses it.</summary>
    public async Task<JsonElement> ReadJsonAsync(TimeSpan? timeout = null)
    {
        while (true)
        {
            var (opcode, payload) = await ReadFrameAsync(timeout).ConfigureAwait(false);
            if (opcode == 0x9)
            {
                await SendFrameAsync(0xA, payload).ConfigureAwait(false);
            }
            else if (opcode == 0x8)
            {
                throw new IOException("the server closed the connection: " + (payload.Length >= 2 ? BinaryPrimitives.ReadUInt16BigEndian(payload) : 0));
            }
            else if (opcode == 0x1)
            {
                return JsonDocument.Parse(payload).RootElement.Clone();
            }
        }
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        _stream.Dispose();
        return ValueTask.CompletedTask;
    }
}
