using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Relay.Bench.Load;

/// <summary>
/// A deliberately small RFC 6455 client for load generation: one socket, no per-message allocation, data-frame
/// payloads handed to a <see cref="StreamScanner"/> as they arrive. A framework client would cost the load generator
/// more CPU than the servers it measures; this one reads into a pooled buffer only while bytes are waiting. A
/// <c>tcp://</c> address is a plain TCP connection instead (MQTT): no upgrade, bytes sent and scanned as they are.
/// </summary>
internal sealed class BenchSocket : IAsyncDisposable
{
    private const int ReceiveBufferBytes = 16 * 1024;

    // Close code 1000 (normal closure), big-endian.
    private static readonly byte[] NormalClosure = [0x03, 0xE8];

    private readonly Socket _socket;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly FrameReader? _reader;

    private BenchSocket(Socket socket, StreamScanner scanner, bool raw)
    {
        _socket = socket;
        Scanner = scanner;
        _reader = raw ? null : new FrameReader(scanner, this);
    }

    // A plain TCP connection: no WebSocket frames either way.
    private bool Raw => _reader is null;

    public StreamScanner Scanner { get; }

    /// <summary>Completes when the server closes the connection or the socket fails.</summary>
    public Task Completion { get; private set; } = Task.CompletedTask;

    /// <summary>Opens the TCP connection (from <paramref name="source"/> when given), upgrades it and starts reading.</summary>
    public static async Task<BenchSocket> ConnectAsync(Uri uri, StreamScanner scanner, IPAddress? source, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (source is not null)
            {
                socket.Bind(new IPEndPoint(source, 0));
            }

            await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(uri.Host), uri.Port), cancellationToken).ConfigureAwait(false);
            if (uri.Scheme == "tcp")
            {
                var plain = new BenchSocket(socket, scanner, raw: true);
                plain.Completion = plain.ReceiveLoopAsync();
                return plain;
            }

            var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
            var request = $"GET {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n";
            await socket.SendAsync(Encoding.ASCII.GetBytes(request), cancellationToken).ConfigureAwait(false);

            var head = new byte[4096];
            var length = 0;
            while (true)
            {
                var read = await socket.ReceiveAsync(head.AsMemory(length, 1), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    throw new IOException($"{uri} closed the connection during the WebSocket upgrade");
                }

                length++;
                if (length >= 4 && head.AsSpan(length - 4, 4).SequenceEqual("\r\n\r\n"u8))
                {
                    break;
                }

                if (length == head.Length)
                {
                    throw new IOException($"{uri} sent an upgrade response over {head.Length} bytes");
                }
            }

            var status = Encoding.ASCII.GetString(head, 0, length);
            if (!status.StartsWith("HTTP/1.1 101", StringComparison.Ordinal))
            {
                throw new IOException($"{uri} refused the WebSocket upgrade: {status.Split("\r\n")[0]}");
            }

            var client = new BenchSocket(socket, scanner, raw: false);
            client.Completion = client.ReceiveLoopAsync();
            return client;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Sends one text frame (on a plain TCP connection, the bytes).</summary>
    public Task SendTextAsync(ReadOnlyMemory<byte> payload) => Raw ? SendRawAsync(payload) : SendFrameAsync(0x1, payload);

    /// <summary>
    /// Sends <paramref name="count"/> publishes in one write, cycling through <paramref name="templates"/> from
    /// <paramref name="first"/>, each stamped with the time it is written, then <paramref name="terminator"/> when the
    /// protocol confirms a burst that way.
    /// </summary>
    public async Task SendBurstAsync(IReadOnlyList<Targets.PublishTemplate> templates, long first, int count, ReadOnlyMemory<byte> terminator)
    {
        var framing = Raw ? 0 : 1;
        var total = terminator.IsEmpty ? 0 : (framing * HeaderLength(terminator.Length)) + terminator.Length;
        for (var i = 0; i < count; i++)
        {
            var template = templates[(int)((first + i) % templates.Count)].Bytes;
            total += (framing * HeaderLength(template.Length)) + template.Length;
        }

        var buffer = ArrayPool<byte>.Shared.Rent(total);
        try
        {
            var offset = 0;
            for (var i = 0; i < count; i++)
            {
                var template = templates[(int)((first + i) % templates.Count)];
                var headerLength = framing * HeaderLength(template.Bytes.Length);
                var frame = buffer.AsSpan(offset, headerLength + template.Bytes.Length);
                if (Raw)
                {
                    template.Bytes.CopyTo(frame);
                }
                else
                {
                    WriteFrame(frame, 0x1, template.Bytes);
                }

                Stamp.Write(frame[(headerLength + template.StampOffset)..], Stamp.MinimumSize, System.Diagnostics.Stopwatch.GetTimestamp());
                offset += frame.Length;
            }

            if (!terminator.IsEmpty && Raw)
            {
                terminator.Span.CopyTo(buffer.AsSpan(offset));
            }
            else if (!terminator.IsEmpty)
            {
                WriteFrame(buffer.AsSpan(offset), 0x1, terminator.Span);
            }

            await SendRawAsync(buffer.AsMemory(0, total)).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    internal async Task SendFrameAsync(int opcode, ReadOnlyMemory<byte> payload)
    {
        var buffer = new byte[HeaderLength(payload.Length) + payload.Length];
        WriteFrame(buffer, opcode, payload.Span);
        await SendRawAsync(buffer).ConfigureAwait(false);
    }

    private async Task SendRawAsync(ReadOnlyMemory<byte> bytes)
    {
        await _sendLock.WaitAsync().ConfigureAwait(false);
        try
        {
            while (!bytes.IsEmpty)
            {
                var sent = await _socket.SendAsync(bytes, SocketFlags.None).ConfigureAwait(false);
                bytes = bytes[sent..];
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private static int HeaderLength(int payloadLength) => (payloadLength < 126 ? 2 : payloadLength <= ushort.MaxValue ? 4 : 10) + 4;

    /// <summary>
    /// Writes a client frame masked with an all-zero key: legal under RFC 6455 (the mask is present; its value is
    /// the client's choice), so the server still does its unmasking work while the load generator does none.
    /// </summary>
    private static void WriteFrame(Span<byte> destination, int opcode, ReadOnlySpan<byte> payload)
    {
        destination[0] = (byte)(0x80 | opcode);
        int offset;
        if (payload.Length < 126)
        {
            destination[1] = (byte)(0x80 | payload.Length);
            offset = 2;
        }
        else if (payload.Length <= ushort.MaxValue)
        {
            destination[1] = 0x80 | 126;
            BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)payload.Length);
            offset = 4;
        }
        else
        {
            destination[1] = 0x80 | 127;
            BinaryPrimitives.WriteUInt64BigEndian(destination[2..], (ulong)payload.Length);
            offset = 10;
        }

        destination.Slice(offset, 4).Clear();
        payload.CopyTo(destination[(offset + 4)..]);
    }

    private async Task ReceiveLoopAsync()
    {
        try
        {
            while (true)
            {
                // Wait for bytes without holding a buffer, so ten thousand quiet sockets hold no memory.
                await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);
                var buffer = ArrayPool<byte>.Shared.Rent(ReceiveBufferBytes);
                try
                {
                    var read = await _socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None).ConfigureAwait(false);
                    if (read == 0)
                    {
                        return;
                    }

                    if (_reader is null)
                    {
                        Scanner.Scan(buffer.AsSpan(0, read));
                    }
                    else if (!_reader.Feed(buffer.AsSpan(0, read)))
                    {
                        return;
                    }
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
        }
        catch (SocketException)
        {
            // The server went away; Completion says so.
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// Closes as a well-behaved client does: a close frame (1000), then the server's close and the end of the stream,
    /// waited for at most <paramref name="timeout"/>; the socket is released either way.
    /// </summary>
    public async Task CloseAsync(TimeSpan timeout)
    {
        try
        {
            await SendFrameAsync(0x8, NormalClosure).ConfigureAwait(false);
            await Completion.WaitAsync(timeout).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or TimeoutException)
        {
            // The server went first, or never answered: the socket goes anyway.
        }
        finally
        {
            _socket.Dispose();
        }
    }

    /// <summary>Resets the connection with no close frame (linger 0 sends an RST), as a client whose network drops does.</summary>
    public void Abort()
    {
        try
        {
            _socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already gone: nothing to reset.
        }

        _socket.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>Splits the byte stream into frames; data payloads go to the scanner, pings are answered.</summary>
    internal sealed class FrameReader(StreamScanner scanner, BenchSocket? owner)
    {
        private readonly byte[] _header = new byte[14];
        private int _headerLength;
        private long _remaining;
        private int _opcode;
        private readonly List<byte> _control = [];

        private bool _inFrame;

        /// <summary>Consumes bytes; false once a close frame arrived.</summary>
        public bool Feed(ReadOnlySpan<byte> data)
        {
            while (true)
            {
                if (!_inFrame)
                {
                    if (!TryReadHeader(ref data))
                    {
                        return true;
                    }

                    _inFrame = true;
                }

                var take = (int)Math.Min(_remaining, data.Length);
                if (_opcode >= 0x8)
                {
                    foreach (var b in data[..take])
                    {
                        _control.Add(b);
                    }
                }
                else if (take > 0)
                {
                    scanner.Scan(data[..take]);
                }

                data = data[take..];
                _remaining -= take;
                if (_remaining > 0)
                {
                    return true;
                }

                _inFrame = false;
                if (!EndFrame())
                {
                    return false;
                }

                if (data.IsEmpty)
                {
                    return true;
                }
            }
        }

        private bool TryReadHeader(ref ReadOnlySpan<byte> data)
        {
            while (true)
            {
                var needed = NeededHeaderBytes();
                if (_headerLength >= needed)
                {
                    break;
                }

                if (data.IsEmpty)
                {
                    return false;
                }

                var take = Math.Min(needed - _headerLength, data.Length);
                data[..take].CopyTo(_header.AsSpan(_headerLength));
                _headerLength += take;
                data = data[take..];
            }

            _opcode = _header[0] & 0x0F;
            var length7 = _header[1] & 0x7F;
            _remaining = length7 switch
            {
                126 => BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(2)),
                127 => (long)BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(2)),
                _ => length7,
            };
            _headerLength = 0;
            _control.Clear();
            return true;
        }

        private int NeededHeaderBytes()
        {
            if (_headerLength < 2)
            {
                return 2;
            }

            return (_header[1] & 0x7F) switch { 126 => 4, 127 => 10, _ => 2 };
        }

        private bool EndFrame()
        {
            switch (_opcode)
            {
                case 0x8:
                    return false;
                case 0x9:
                    _ = owner?.SendFrameAsync(0xA, _control.ToArray());
                    break;
            }

            return true;
        }
    }
}
